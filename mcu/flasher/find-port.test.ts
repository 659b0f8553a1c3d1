import { describe, expect, it } from 'vitest';
import { getBoard } from '../../boards/board-catalogue.ts';
import type { RunningBench } from '../simulator/simulated-board.ts';
import { findAnyBoardPort, findBoardPort } from './find-port.ts';

type Plugged = { path: string; vendorId?: string; productId?: string; manufacturer?: string };

/** What `SerialPort.list()` returns: every field present, undefined when unknown. */
const listed = (ports: Plugged[]) => async () =>
  ports.map((port) => ({
    manufacturer: undefined,
    serialNumber: undefined,
    pnpId: undefined,
    locationId: undefined,
    vendorId: undefined,
    productId: undefined,
    ...port,
  }));

/** Bench boards as `listRunningBenches()` finds them in `<cache>/bench/*`: `uno`, or `uno@uno-2` for another directory. */
const running =
  (...benches: string[]) =>
  async (): Promise<RunningBench[]> =>
    benches.map((entry, index) => {
      const [board = '', directory = board.replace(':', '-')] = entry.split('@');
      const stateDir = `/cache/bench/${directory}`;
      return { board, pid: 100 + index, stateDir, portPath: `${stateDir}/tty` };
    });

const GENUINE_UNO = { path: '/dev/ttyACM0', vendorId: '2341', productId: '0043' };
const CH340 = { path: '/dev/ttyUSB0', vendorId: '1a86', productId: '7523' };
const SERIAL = { path: '/dev/ttyS0' };
const FTDI = { path: '/dev/ttyUSB1', vendorId: '0403', productId: '6001', manufacturer: 'FTDI' };
const MOUSE = { path: '/dev/ttyACM1', vendorId: '046d', productId: 'c52b', manufacturer: 'Logitech' };

describe('findBoardPort (--port auto --board B)', () => {
  it.each([
    {
      why: 'the one port whose USB id the board file lists',
      board: 'uno',
      plugged: [SERIAL, GENUINE_UNO],
      benches: ['uno'],
      path: '/dev/ttyACM0',
      notice: undefined,
    },
    {
      why: 'the simulated board when no hardware matches, saying so',
      board: 'uno',
      plugged: [SERIAL],
      benches: ['mega2560', 'uno'],
      path: '/cache/bench/uno/tty',
      notice: 'No uno plugged in; using the simulated uno at /cache/bench/uno/tty',
    },
    {
      why: 'a simulated old-bootloader Nano for --board nano (variants share their USB ids)',
      board: 'nano',
      plugged: [],
      benches: ['nano:old-bootloader'],
      path: '/cache/bench/nano-old-bootloader/tty',
      notice:
        'No nano plugged in; using the simulated nano:old-bootloader at /cache/bench/nano-old-bootloader/tty',
    },
    {
      why: 'the simulated Nano started as exactly --board nano when both Nanos run',
      board: 'nano',
      plugged: [],
      benches: ['nano', 'nano:old-bootloader'],
      path: '/cache/bench/nano/tty',
      notice: 'No nano plugged in; using the simulated nano at /cache/bench/nano/tty',
    },
    {
      why: 'the simulated variant asked for when both Nanos run',
      board: 'nano:old-bootloader',
      plugged: [],
      benches: ['nano', 'nano:old-bootloader'],
      path: '/cache/bench/nano-old-bootloader/tty',
      notice:
        'No nano:old-bootloader plugged in; using the simulated nano:old-bootloader at /cache/bench/nano-old-bootloader/tty',
    },
  ])('picks $why', async ({ board, plugged, benches, path, notice }) => {
    const notices: string[] = [];
    const found = await findBoardPort(getBoard(board), {
      list: listed(plugged),
      benches: running(...benches),
      onNotice: (line) => notices.push(line),
    });
    expect(found).toBe(path);
    expect(notices).toEqual(notice ? [notice] : []);
  });

  it.each([
    {
      why: 'lists what is plugged in when nothing matches',
      board: 'uno',
      plugged: [SERIAL, FTDI],
      benches: ['mega2560'],
      code: 'port-not-found',
      message:
        'No Arduino Uno found: no serial port has one of its USB ids and no simulated uno runs. Plugged in: ' +
        '/dev/ttyS0 (not USB), /dev/ttyUSB1 (0403:6001 FTDI), /cache/bench/mega2560/tty (simulated mega2560). ' +
        'Plug the board in, or name its port with --port.',
    },
    {
      why: 'says when no serial port is plugged in at all',
      board: 'uno',
      plugged: [],
      benches: [],
      code: 'port-not-found',
      message:
        'No Arduino Uno found: no serial port has one of its USB ids and no simulated uno runs. ' +
        'Plugged in: no serial ports at all. Plug the board in, or name its port with --port.',
    },
    {
      why: 'asks for --port when several plugged-in ports could be the board',
      board: 'uno',
      plugged: [GENUINE_UNO, CH340],
      benches: ['uno'],
      code: 'port-ambiguous',
      message:
        '2 ports could be Arduino Uno: /dev/ttyACM0 (2341:0043 Arduino Uno R3), /dev/ttyUSB0 (1a86:7523 CH340 USB-serial). ' +
        'Say which with --port.',
    },
    {
      why: 'asks for --port when several simulated boards could be the board',
      board: 'uno',
      plugged: [SERIAL],
      benches: ['uno', 'uno@uno-2'],
      code: 'port-ambiguous',
      message:
        '2 ports could be Arduino Uno: /cache/bench/uno/tty (simulated uno), ' +
        '/cache/bench/uno-2/tty (simulated uno). Say which with --port.',
    },
  ])('$why', async ({ board, plugged, benches, code, message }) => {
    await expect(
      findBoardPort(getBoard(board), { list: listed(plugged), benches: running(...benches) }),
    ).rejects.toMatchObject({ code, message });
  });
});

describe('findAnyBoardPort (--port auto, no board named)', () => {
  it.each([
    {
      why: 'the one port with a known board USB id',
      plugged: [SERIAL, MOUSE, CH340],
      benches: ['uno'],
      path: '/dev/ttyUSB0',
    },
    {
      why: 'the one simulated board when no hardware is a board',
      plugged: [SERIAL, MOUSE],
      benches: ['uno'],
      path: '/cache/bench/uno/tty',
    },
  ])('picks $why', async ({ plugged, benches, path }) => {
    const notices: string[] = [];
    const found = await findAnyBoardPort({
      list: listed(plugged),
      benches: running(...benches),
      onNotice: (line) => notices.push(line),
    });
    expect(found).toBe(path);
    expect(notices).toEqual(
      path.startsWith('/cache') ? [`No board plugged in; using the simulated uno at ${path}`] : [],
    );
  });

  it.each([
    {
      why: 'nothing looks like a board',
      plugged: [SERIAL, MOUSE],
      benches: [],
      code: 'port-not-found',
      message:
        "No board found: no serial port has a known board's USB id and no simulated board runs. " +
        'Plugged in: /dev/ttyACM1 (046d:c52b Logitech), /dev/ttyS0 (not USB). Plug a board in, start a ' +
        'simulated one (boardfleet bench start uno), or name the port with --port.',
    },
    {
      why: 'several ports look like boards',
      plugged: [GENUINE_UNO, CH340],
      benches: [],
      code: 'port-ambiguous',
      message:
        '2 ports could be a board: /dev/ttyACM0 (2341:0043 uno), /dev/ttyUSB0 (1a86:7523 mega2560, nano, ' +
        'nano:old-bootloader, pro-mini-5v or uno (USB-serial chip)). Say which with --port.',
    },
    {
      why: 'several simulated boards run and no hardware is a board',
      plugged: [],
      benches: ['mega2560', 'uno'],
      code: 'port-ambiguous',
      message:
        '2 ports could be a board: /cache/bench/mega2560/tty (simulated mega2560), ' +
        '/cache/bench/uno/tty (simulated uno). Say which with --port.',
    },
  ])('refuses when $why', async ({ plugged, benches, code, message }) => {
    await expect(
      findAnyBoardPort({ list: listed(plugged), benches: running(...benches) }),
    ).rejects.toMatchObject({ code, message });
  });
});
