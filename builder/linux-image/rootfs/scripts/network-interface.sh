# Boardfleet's choice of network interface, sourced by /sbin/init. Plain POSIX sh: busybox ash
# runs it on the device. A USB Ethernet adapter with a locally administered MAC (qemu's usb-net,
# many cheap adapters) is named usb0, not eth0, so the board's configured name alone is not enough.

# boardfleet_network_interface CONFIGURED WAIT_SECONDS [NET_DIR]: the board's configured
# interface as soon as it exists, else the first other hardware interface (one with a device/
# link: not lo, not a tunnel) that has a carrier once up; polls once a second for WAIT_SECONDS.
# Sets NETWORK_INTERFACE and says which; returns 1 when there is none.
boardfleet_network_interface() {
	_configured=$1
	_net=${3:-/sys/class/net}
	_waited=0
	NETWORK_INTERFACE=
	while :; do
		if [ -e "$_net/$_configured" ]; then
			NETWORK_INTERFACE=$_configured
			echo "boardfleet: network on $_configured"
			return 0
		fi
		for _path in "$_net"/*; do
			[ -e "$_path/device" ] || continue
			_name=${_path##*/}
			# carrier reads as an error until the interface is up.
			ip link set "$_name" up 2>/dev/null
			if [ "$(cat "$_path/carrier" 2>/dev/null)" = 1 ]; then
				NETWORK_INTERFACE=$_name
				echo "boardfleet: network on $_name ($_configured not present)"
				return 0
			fi
		done
		if [ "$_waited" -ge "$2" ]; then
			echo "boardfleet: no network: $_configured not present and no other interface got a carrier in $2 s"
			return 1
		fi
		sleep 1
		_waited=$((_waited + 1))
	done
}
