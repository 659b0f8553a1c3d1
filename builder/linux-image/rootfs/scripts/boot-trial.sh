# Boardfleet's boot-once trial of a slot (protocol/linux-ab-layout.ts, initramfs-trial), sourced
# by the initramfs /init on boards whose kernel cannot ask the Pi firmware for a tryboot. The
# agent arms a trial by writing trial.txt (slot=, fallback=) and pointing config.txt at the new
# slot; it commits by removing trial.txt. Plain POSIX sh: busybox ash runs it on the device.

# Sets os_prefix= of config.txt in DIR to slot $2, keeping every other line; writes a temporary
# file and renames it over config.txt, the nearest to an atomic replace that FAT allows.
boardfleet_point_config_at() {
	_config=$1/config.txt
	_found=
	while IFS= read -r _line || [ -n "$_line" ]; do
		_trimmed=${_line#"${_line%%[! 	]*}"}
		case "$_trimmed" in
		os_prefix=* | os_prefix[\ \	]*=*)
			_found=1
			echo "os_prefix=slot-$2/"
			;;
		*) printf '%s\n' "$_line" ;;
		esac
	done <"$_config" >"$_config.tmp" || return 1
	[ -n "$_found" ] || echo "os_prefix=slot-$2/" >>"$_config.tmp" || return 1
	sync
	mv -f "$_config.tmp" "$_config" || return 1
	sync
}

# boardfleet_trial DIR SLOT: DIR is the boot FAT, mounted read-write; SLOT the slot this boot
# runs (boardfleet.slot=). Returns 0 to go on booting, 2 when the trial failed and config.txt
# names the fallback again: the caller restarts.
boardfleet_trial() {
	_trial=$1/trial.txt
	[ -f "$_trial" ] || return 0
	_slot=
	_fallback=
	_booted=
	while IFS='=' read -r _key _value || [ -n "$_key" ]; do
		case "$_key" in
		slot) _slot=$_value ;;
		fallback) _fallback=$_value ;;
		booted) _booted=$_value ;;
		esac
	done <"$_trial"
	case "$_slot:$_fallback" in
	a:b | b:a) ;;
	*)
		echo "boardfleet: trial.txt names no slot and fallback (slot=$_slot fallback=$_fallback): removing it"
		rm -f "$_trial"
		sync
		return 0
		;;
	esac
	if [ "$2" != "$_slot" ]; then
		# Arming or a failed trial's clean-up was cut short: config.txt still (or again) names this slot.
		echo "boardfleet: slot $_slot is not on trial in this boot (slot ${2:-unknown} runs): removing trial.txt"
		rm -f "$_trial"
		sync
		return 0
	fi
	if [ "$_booted" = 1 ]; then
		echo "boardfleet: trial of slot $_slot failed, back to slot $_fallback"
		# config.txt first: should power fail between the two, the fallback boots and drops trial.txt.
		boardfleet_point_config_at "$1" "$_fallback" || {
			echo "boardfleet: cannot rewrite $1/config.txt: staying on slot $_slot"
			return 0
		}
		rm -f "$_trial"
		sync
		return 2
	fi
	echo "boardfleet: trial of slot $_slot, first boot"
	printf 'slot=%s\nfallback=%s\nbooted=1\n' "$_slot" "$_fallback" >"$_trial.tmp" &&
		sync &&
		mv -f "$_trial.tmp" "$_trial" &&
		sync ||
		echo "boardfleet: cannot mark trial.txt: a hang of slot $_slot would not be left"
	return 0
}
