import { describe, expect, it } from 'vitest';
import { getBoard, getUf2Board } from '../../boards/board-catalogue.ts';
import {
  formatLikelyBoard,
  formatUsbId,
  type ListedPort,
  listBoardPorts,
  listSerialPorts,
  portMatchesBoard,
  uf2BoardsForUsbDevice,
} from './serial-ports.ts';

// Shaped as @serialport/bindings-cpp reports ports on Linux (udev properties, lower-case hex ids).
const PLUGGED_IN: ListedPort[] = (
  [
    {
      path: '/dev/ttyUSB0',
      manufacturer: '1a86',
      vendorId: '1a86',
      productId: '7523',
      pnpId: 'usb-1a86_USB2.0-Serial-if00-port0',
    },
    {
      path: '/dev/ttyACM0',
      manufacturer: 'Arduino (www.arduino.cc)',
      serialNumber: '85735313',
      vendorId: '2341',
      productId: '0043',
      pnpId: 'usb-Arduino__www.arduino.cc__0043_85735313-if00',
    },
    {
      path: '/dev/ttyS0',
      manufacturer: undefined,
      vendorId: undefined,
      productId: undefined,
      pnpId: undefined,
    },
    {
      path: '/dev/ttyACM1',
      manufacturer: 'Logitech',
      vendorId: '046d',
      productId: 'c52b',
      pnpId: 'usb-Logitech-if02',
    },
  ] as Array<Partial<ListedPort>>
).map((port) => ({ serialNumber: undefined, locationId: undefined, ...port }) as ListedPort);

describe('serial ports', () => {
  it('names the board each port most likely is from its USB ids', async () => {
    const ports = await listSerialPorts(async () => PLUGGED_IN);
    expect(ports.map((port) => [port.path, formatUsbId(port), formatLikelyBoard(port)])).toEqual([
      ['/dev/ttyACM0', '2341:0043', 'uno'],
      ['/dev/ttyACM1', '046d:c52b', 'unknown'],
      ['/dev/ttyS0', '-', 'not USB'],
      [
        '/dev/ttyUSB0',
        '1a86:7523',
        'mega2560, nano, nano:old-bootloader, pro-mini-5v or uno (USB-serial chip)',
      ],
    ]);
  });

  it("names a Pico's ids as pico, and as what: its boot ROM's drive or its firmware's serial port", async () => {
    const [port] = await listSerialPorts(async () => [
      {
        path: '/dev/ttyACM2',
        vendorId: '2e8a',
        productId: '000a',
        manufacturer: 'Raspberry Pi',
      } as ListedPort,
    ]);
    expect(port!.likely).toEqual({ kind: 'genuine', boards: ['pico'], role: 'firmware-serial' });
    expect(formatLikelyBoard(port!)).toBe('pico (firmware serial)');
    expect(uf2BoardsForUsbDevice(0x2e8a, 0x0003)).toEqual({
      kind: 'genuine',
      boards: ['pico'],
      role: 'bootloader-drive',
    });
    const bench = { path: '/bench/pico/tty', bench: { board: 'pico', pid: 7, stateDir: '/bench/pico' } };
    expect(
      [port!, bench, ...(await listSerialPorts(async () => PLUGGED_IN))].filter((candidate) =>
        portMatchesBoard(candidate, getUf2Board('pico')),
      ),
    ).toEqual([port, bench]);
  });

  it('lists the ports of this machine through udev without failing', async () => {
    // A machine with no boards plugged in still answers, with an empty or non-USB list.
    const ports = await listSerialPorts();
    expect(Array.isArray(ports)).toBe(true);
    for (const port of ports) expect(port.path).toMatch(/^\/dev\//);
  });
});

describe('bench boards as ports', () => {
  const benches = async () => [
    {
      board: 'nano:old-bootloader',
      pid: 41,
      stateDir: '/cache/bench/nano-old-bootloader',
      portPath: '/cache/bench/nano-old-bootloader/tty',
    },
    // Started by an older Boardfleet that did not write its board id: not a port anyone can pick.
    { pid: 42, stateDir: '/cache/bench/unknown', portPath: '/cache/bench/unknown/tty' },
  ];

  it('lists the running bench boards after the plugged-in ports, with their board id', async () => {
    const ports = await listBoardPorts({ list: async () => PLUGGED_IN.slice(1, 2), benches });
    expect(ports).toEqual([
      expect.objectContaining({ path: '/dev/ttyACM0', likely: { kind: 'genuine', boards: ['uno'] } }),
      {
        path: '/cache/bench/nano-old-bootloader/tty',
        bench: { board: 'nano:old-bootloader', pid: 41, stateDir: '/cache/bench/nano-old-bootloader' },
      },
    ]);
    expect(ports.map(formatLikelyBoard)).toEqual(['uno', 'nano:old-bootloader (simulated)']);
  });

  it.each([
    ['nano', true],
    ['nano:old-bootloader', true],
    ['uno', false],
    ['pro-mini-5v', false],
  ])('a simulated nano:old-bootloader can be --board %s: %s', (board, matches) => {
    const port = { path: '/tty', bench: { board: 'nano:old-bootloader', pid: 1, stateDir: '/' } };
    expect(portMatchesBoard(port, getBoard(board))).toBe(matches);
  });
});
