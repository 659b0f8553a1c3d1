import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { networkInterfaceScript } from './init-scripts.ts';

/**
 * /sbin/init's interface choice run for real, under busybox's `sh` (what the device runs) and
 * dash, against a directory standing for /sys/class/net. Doubles stand for what needs a kernel:
 * `ip link set NAME up` reads the interface's `cable` file into `carrier` (sysfs only gives a
 * carrier once the interface is up), and `sleep` advances a clock at which interfaces appear.
 */
const SHELLS: Array<{ name: string; command: string[] }> = [
  { name: 'dash', command: ['dash'] },
  { name: 'busybox sh', command: ['busybox', 'sh'] },
];

const work = mkdtempSync(join(tmpdir(), 'network-interface-'));
const script = join(work, 'network-interface.sh');
writeFileSync(script, networkInterfaceScript());

interface Interface {
  name: string;
  /** Hardware has a device/ link in sysfs; lo and tunnels do not. */
  hardware: boolean;
  /** What `carrier` reads once the interface is up. */
  cable: boolean;
  /** The second of the wait at which the interface appears (0: there from the start). */
  at: number;
}

const DOUBLES = `
ip() { echo "ip $*" >>"$LOG"; [ "$1 $2 $4" = 'link set up' ] && cp "$NET/$3/cable" "$NET/$3/carrier" 2>/dev/null; return 0; }
sleep() { CLOCK=$((CLOCK + 1)); [ -d "$LATER/$CLOCK" ] && cp -R "$LATER/$CLOCK/." "$NET/"; return 0; }
CLOCK=0
. "$SCRIPT"
boardfleet_network_interface "$CONFIGURED" "$WAIT" "$NET"
echo "status=$? chosen=$NETWORK_INTERFACE after=$CLOCK"
`;

/** Runs the choice with the board's `configured` interface and these interfaces. */
function choose(shell: string[], configured: string, waitSeconds: number, interfaces: Interface[]) {
  const dir = mkdtempSync(join(work, 'case-'));
  const net = join(dir, 'net');
  const later = join(dir, 'later');
  mkdirSync(net);
  for (const { name, hardware, cable, at } of interfaces) {
    const path = at === 0 ? join(net, name) : join(later, String(at), name);
    mkdirSync(path, { recursive: true });
    if (hardware) mkdirSync(join(path, 'device'));
    writeFileSync(join(path, 'cable'), cable ? '1\n' : '0\n');
  }
  const log = join(dir, 'log');
  writeFileSync(log, '');
  const [program, ...args] = shell as [string, ...string[]];
  const result = spawnSync(program, [...args, '-c', DOUBLES], {
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      SCRIPT: script,
      NET: net,
      LATER: later,
      LOG: log,
      CONFIGURED: configured,
      WAIT: String(waitSeconds),
    },
  });
  return { output: `${result.stdout}${result.stderr}`, status: result.status };
}

const present = (name: string, cable = true, at = 0): Interface => ({ name, hardware: true, cable, at });
const virtual = (name: string): Interface => ({ name, hardware: false, cable: true, at: 0 });

describe.each(SHELLS)('the network interface choice under $name', ({ command }) => {
  it.each([
    {
      case: "the board's interface, present, is used even before it has a carrier",
      interfaces: [present('usb0'), present('eth0', false)],
      output: 'boardfleet: network on eth0\nstatus=0 chosen=eth0 after=0\n',
    },
    {
      case: 'a USB adapter named usb0 when eth0 is not there',
      interfaces: [virtual('lo'), present('usb0')],
      output: 'boardfleet: network on usb0 (eth0 not present)\nstatus=0 chosen=usb0 after=0\n',
    },
    {
      case: 'the first interface that gets a carrier, not the first present',
      interfaces: [present('eth1', false), present('usb0')],
      output: 'boardfleet: network on usb0 (eth0 not present)\nstatus=0 chosen=usb0 after=0\n',
    },
    {
      case: 'lo and tunnels never count; an adapter that shows up late does',
      interfaces: [virtual('lo'), virtual('sit0'), present('usb0', true, 3)],
      output: 'boardfleet: network on usb0 (eth0 not present)\nstatus=0 chosen=usb0 after=3\n',
    },
    {
      case: "the board's interface appearing late wins over one without a carrier",
      interfaces: [present('usb0', false), present('eth0', false, 2)],
      output: 'boardfleet: network on eth0\nstatus=0 chosen=eth0 after=2\n',
    },
    {
      case: 'nothing with a carrier: gives up after the wait, saying so',
      interfaces: [virtual('lo'), present('usb0', false)],
      output:
        'boardfleet: no network: eth0 not present and no other interface got a carrier in 5 s\n' +
        'status=1 chosen= after=5\n',
    },
  ])('$case', ({ interfaces, output }) => {
    expect(choose(command, 'eth0', 5, interfaces)).toEqual({ output, status: 0 });
  });
});
