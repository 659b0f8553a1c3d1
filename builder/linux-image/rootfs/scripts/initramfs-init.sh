#!/bin/sh
# Boardfleet's initramfs /init, written by the image builder: loads the board's kernel modules,
# waits for the slot's root device named by boardfleet.root= on the kernel command line, mounts
# it read-only and hands over to its /sbin/init. On any failure it says why and restarts, so
# that a slot on trial is left for the committed one. On boards whose kernel cannot ask the Pi
# firmware for a tryboot (AB_TRIAL=initramfs-trial) it keeps the slot's boot-once trial first.
export PATH=/bin
KERNEL_VERSION=@KERNEL_VERSION@
ROOT_WAIT_SECONDS=@ROOT_WAIT_SECONDS@
AB_TRIAL=@AB_TRIAL@
BOOT_DEVICE=@BOOT_DEVICE@

# The image has no /dev/console node: mount devtmpfs first, then take the console.
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

fail() {
	echo "boardfleet: initramfs failed: $*"
	echo "boardfleet: restarting in 5 s"
	sleep 5
	reboot -f
	exit 1
}

while read -r module; do
	insmod "/lib/modules/$KERNEL_VERSION/$module" || echo "boardfleet: could not load $module"
done <"/lib/modules/$KERNEL_VERSION/load-order"

ROOT=
SLOT=
set -f
for parameter in $(cat /proc/cmdline); do
	case "$parameter" in
	boardfleet.root=*) ROOT=${parameter#boardfleet.root=} ;;
	boardfleet.slot=*) SLOT=${parameter#boardfleet.slot=} ;;
	esac
done
set +f
[ -n "$ROOT" ] || fail "no boardfleet.root= on the kernel command line"

tenths=0
while [ ! -b "$ROOT" ]; do
	[ "$tenths" -eq 10 ] && echo "boardfleet: slot ${SLOT:-unknown}: waiting for $ROOT"
	[ "$tenths" -ge $((ROOT_WAIT_SECONDS * 10)) ] && fail "$ROOT did not appear within $ROOT_WAIT_SECONDS s"
	usleep 100000
	tenths=$((tenths + 1))
done

if [ "$AB_TRIAL" = initramfs-trial ]; then
	if [ -b "$BOOT_DEVICE" ] && mount -t vfat -o rw "$BOOT_DEVICE" /boot; then
		. /lib/boardfleet/boot-trial.sh
		boardfleet_trial /boot "$SLOT"
		trial=$?
		umount /boot || sync
		if [ "$trial" -eq 2 ]; then
			echo "boardfleet: restarting"
			reboot -f
			exit 1
		fi
	else
		echo "boardfleet: cannot mount the boot partition $BOOT_DEVICE: no trial check in this boot"
	fi
fi

mount -t squashfs -o ro "$ROOT" /newroot || fail "cannot mount $ROOT (slot ${SLOT:-unknown}) as a squashfs root"
[ -x /newroot/sbin/init ] || fail "$ROOT (slot ${SLOT:-unknown}) has no /sbin/init"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /sbin/init
