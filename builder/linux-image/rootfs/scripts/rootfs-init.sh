#!/bin/sh
# Boardfleet's /sbin/init (PID 1), written by the image builder. The root is a read-only squashfs
# slot; /data (ext4) keeps the agent's state; /boot/firmware (FAT) holds what a user may edit
# from any computer. Starts the agent under supervision; reboot, poweroff and halt (busybox's,
# which signal PID 1) stop it cleanly first.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
umask 022

# Filled in by the builder (the same devices are in /etc/boardfleet/slots.json).
BOOT_DEVICE=@BOOT_DEVICE@
DATA_DEVICE=@DATA_DEVICE@
NET_INTERFACE=@NET_INTERFACE@
CONSOLE_DEVICE=@CONSOLE_DEVICE@
AGENT=@AGENT@
DEBUG_SHELL=@DEBUG_SHELL@
APP_RELEASE=@APP_RELEASE@

AGENT_DATA=/data/boardfleet
AGENT_LOG=$AGENT_DATA/agent.log
AGENT_PID=/run/boardfleet-agent.pid
AGENT_FIFO=/run/boardfleet-agent.fifo

say() { echo "boardfleet: $*"; }

uptime_seconds() {
	read -r seconds _ </proc/uptime
	echo "${seconds%%.*}"
}

# The initramfs moved these mounts over; mount them when started without one.
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/kernel ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
# crun asks this mount which cgroup mode the host has, even with no cgroup manager.
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup

# Without a battery-backed clock (Pi 3, Zero 2 W) the kernel starts in 1970. Like systemd's clock
# epoch, never earlier than the image's build: the builder stamps every root file with it. The
# agent then takes the time from its server.
clock_floor=$(stat -c %Y /etc/os-release)
if [ "$(date +%s)" -lt "$clock_floor" ] && date -u -s "@$clock_floor" >/dev/null; then
	say "no clock: set to the image's build time, $(date -u '+%Y-%m-%d %H:%M UTC')"
fi

if ! mount -t ext4 -o rw,noatime "$DATA_DEVICE" /data; then
	say "cannot mount the data partition $DATA_DEVICE: keeping state in memory, nothing will persist"
	mount -t tmpfs -o mode=0755 tmpfs /data
fi
if ! mount -t vfat -o rw,noatime,flush,umask=0077 "$BOOT_DEVICE" /boot/firmware; then
	say "cannot mount the boot partition $BOOT_DEVICE: the agent has no configuration"
fi

# A hostname file on the boot partition (editable from any computer) wins over the image's.
HOSTNAME_FILE=/etc/hostname
[ -s /boot/firmware/hostname ] && HOSTNAME_FILE=/boot/firmware/hostname
hostname "$(head -n 1 "$HOSTNAME_FILE" | tr -cd 'A-Za-z0-9-')"

SLOT=$(sed -n 's/.*boardfleet\.slot=\([ab]\).*/\1/p' /proc/cmdline)
say "slot ${SLOT:-unknown} up"

. @NETWORK_SCRIPT@
network() {
	ip link set lo up
	boardfleet_network_interface "$NET_INTERFACE" 30 || return
	ip link set "$NETWORK_INTERFACE" up
	udhcpc -i "$NETWORK_INTERFACE" -b -t 10 -T 2 -S -s /usr/share/udhcpc/default.script -x "hostname:$(hostname)"
}
network &

# The image's app is installed into the agent's data directory on the first boot only: after
# that the agent's own app rollouts decide what runs.
if [ -n "$APP_RELEASE" ] && [ ! -e "$AGENT_DATA/app/current" ]; then
	releases=$AGENT_DATA/app/releases
	mkdir -p "$releases"
	rm -rf "$releases/$APP_RELEASE.partial"
	if cp -a "/opt/boardfleet/app/$APP_RELEASE" "$releases/$APP_RELEASE.partial" &&
		rm -rf "$releases/$APP_RELEASE" &&
		mv "$releases/$APP_RELEASE.partial" "$releases/$APP_RELEASE" &&
		ln -s "$releases/$APP_RELEASE" "$AGENT_DATA/app/current"; then
		say "installed the image's app $APP_RELEASE"
	else
		say "could not install the image's app $APP_RELEASE"
	fi
fi

# Runs the agent again whenever it exits, waiting 1 s, 2 s, 4 s … up to 60 s between starts
# while it keeps failing fast. Its output goes to the console and to agent.log.
supervise_agent() {
	delay=1
	while :; do
		mkdir -p "$AGENT_DATA"
		if [ -f "$AGENT_LOG" ] && [ "$(wc -c <"$AGENT_LOG")" -gt 1048576 ]; then
			mv -f "$AGENT_LOG" "$AGENT_LOG.1"
		fi
		rm -f "$AGENT_FIFO"
		mkfifo "$AGENT_FIFO"
		tee -a "$AGENT_LOG" <"$AGENT_FIFO" &
		started=$(uptime_seconds)
		node /opt/boardfleet/agent.mjs --config /boot/firmware/boardfleet.json --data-dir "$AGENT_DATA" \
			>"$AGENT_FIFO" 2>&1 &
		echo "$!" >"$AGENT_PID"
		say "agent started"
		wait "$!"
		status=$?
		ran=$(($(uptime_seconds) - started))
		if [ "$ran" -ge 60 ]; then delay=1; fi
		say "agent exited with status $status after $ran s; starting it again in $delay s"
		sleep "$delay"
		delay=$((delay * 2))
		if [ "$delay" -gt 60 ]; then delay=60; fi
	done
}

debug_shell() {
	while :; do
		setsid -c sh -l <"/dev/$CONSOLE_DEVICE" >"/dev/$CONSOLE_DEVICE" 2>&1
	done
}

stop_system() {
	say "$1: stopping"
	trap '' TERM USR1 USR2 INT
	[ -n "$SUPERVISOR" ] && kill -TERM "$SUPERVISOR" 2>/dev/null
	[ -n "$SHELL_LOOP" ] && kill -TERM "$SHELL_LOOP" 2>/dev/null
	kill -TERM -1 2>/dev/null
	waited=0
	while [ -f "$AGENT_PID" ] && kill -0 "$(cat "$AGENT_PID")" 2>/dev/null && [ "$waited" -lt 10 ]; do
		sleep 1
		waited=$((waited + 1))
	done
	kill -KILL -1 2>/dev/null
	sync
	umount /data 2>/dev/null || mount -o remount,ro /data
	umount /boot/firmware 2>/dev/null || mount -o remount,ro /boot/firmware
	sync
	"$1" -f
}
trap 'stop_system reboot' TERM INT
trap 'stop_system poweroff' USR2
trap 'stop_system halt' USR1

SUPERVISOR=
SHELL_LOOP=
if [ "$AGENT" = yes ]; then
	supervise_agent &
	SUPERVISOR=$!
else
	say "this image has no agent"
fi
if [ "$DEBUG_SHELL" = yes ]; then
	debug_shell &
	SHELL_LOOP=$!
fi

# PID 1 must never exit; waiting also reaps the orphans the kernel hands to it.
while :; do
	wait
	sleep 1
done
