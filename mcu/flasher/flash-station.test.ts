import { describe, expect, it } from 'vitest';
import { getBoard } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { SerialPortInfo } from '../ports/serial-ports.ts';
import type { FlashResult } from './flash-board.ts';
import { flashStation, reasonOf, stationPorts } from './flash-station.ts';

const uno = getBoard('uno');
const genuineUno: SerialPortInfo = { path: '/dev/ttyACM0', vendorId: 0x2341, productId: 0x0043 };
const benchUno: SerialPortInfo = {
  path: '/bench/uno-1/tty',
  bench: { board: 'uno', pid: 10, stateDir: '/bench/uno-1' },
};
const benchMega: SerialPortInfo = {
  path: '/bench/mega/tty',
  bench: { board: 'mega2560', pid: 11, stateDir: '/bench/mega' },
};
const ftdi: SerialPortInfo = { path: '/dev/ttyUSB0', vendorId: 0x0403, productId: 0x6001 };
const notUsb: SerialPortInfo = { path: '/dev/ttyS0' };

function resultFor(port: string, bytesWritten = 1024, durationMs = 3140): FlashResult {
  return {
    board: 'uno',
    portPath: port,
    protocol: 'stk500v1',
    mcu: 'atmega328p',
    signature: '1e 95 0f',
    bytesWritten,
    pages: bytesWritten / 128,
    durationMs,
    bytesPerSecond: bytesWritten / (durationMs / 1000),
    bytesVerified: bytesWritten,
    verified: true,
  };
}

describe('the ports a flash station writes', () => {
  it.each([
    { ports: [genuineUno, benchUno, benchMega, ftdi], expected: ['/dev/ttyACM0', '/bench/uno-1/tty'] },
    { ports: [benchUno], expected: ['/bench/uno-1/tty'] },
    { ports: [genuineUno], expected: ['/dev/ttyACM0'] },
  ])('takes every port that can be an Uno: $expected', ({ ports, expected }) => {
    expect(stationPorts(ports, uno)).toEqual(expected);
  });

  it.each([
    {
      ports: [benchMega, ftdi, notUsb],
      present: '/bench/mega/tty (bench mega2560), /dev/ttyUSB0 (0403:6001), /dev/ttyS0 (not USB)',
    },
    { ports: [], present: 'no serial ports at all' },
  ])('refuses, listing what is plugged in, when none can be an Uno ($present)', ({ ports, present }) => {
    expect(() => stationPorts(ports, uno)).toThrow(
      new BoardfleetError(
        'port-not-found',
        `No Arduino Uno to flash: no serial port has one of its USB ids and no bench board runs as uno. ` +
          `Plugged in: ${present}.`,
      ),
    );
  });
});

describe('a flash station', () => {
  it.each([
    { name: 'all succeed', failing: {} as Record<string, Error>, verified: [true, true, true] },
    {
      name: 'one port busy',
      failing: { b: new BoardfleetError('port-busy', 'b is in use by another program') },
      verified: [true, false, true],
    },
    {
      name: 'one verify failure and one unexpected error',
      failing: {
        a: new BoardfleetError('verify-failed', 'Verify failed on a: the page at 0x0100'),
        c: new Error('something\nbroke'),
      },
      verified: [false, true, false],
    },
  ])('reports every port, a failure never stopping the others: $name', async ({ failing, verified }) => {
    const started: string[] = [];
    const outcomes = await flashStation({
      ports: ['a', 'b', 'c'],
      board: uno,
      flash: async (port) => {
        started.push(port);
        // Every port starts before any finishes: they run at once, not one after another.
        await new Promise((resolve) => setImmediate(resolve));
        expect(started).toHaveLength(3);
        const error = failing[port];
        if (error) throw error;
        return resultFor(port);
      },
    });
    expect(outcomes.map((outcome) => outcome.verified)).toEqual(verified);
    for (const outcome of outcomes) {
      const error = failing[outcome.port];
      if (outcome.verified) {
        expect(outcome).toEqual({
          port: outcome.port,
          board: 'uno',
          verified: true,
          bytes: 1024,
          seconds: 3.14,
          result: resultFor(outcome.port),
        });
      } else {
        expect(outcome).toEqual({ port: outcome.port, board: 'uno', verified: false, ...reasonOf(error) });
      }
    }
  });

  it('flashes boards reset by a 1200-baud touch one after another, each finding its own bootloader port', async () => {
    let running = 0;
    const outcomes = await flashStation({
      ports: ['a', 'b', 'c'],
      board: getBoard('leonardo'),
      flash: async (port) => {
        expect(running).toBe(0);
        running++;
        await new Promise((resolve) => setImmediate(resolve));
        running--;
        return resultFor(port);
      },
    });
    expect(outcomes.map((outcome) => [outcome.port, outcome.verified])).toEqual([
      ['a', true],
      ['b', true],
      ['c', true],
    ]);
  });

  it('hands every port the one abort signal, so Ctrl-C stops them all', async () => {
    const controller = new AbortController();
    const flashing = flashStation({
      ports: ['a', 'b'],
      board: uno,
      signal: controller.signal,
      flash: (_port, signal) =>
        new Promise((_resolve, reject) => {
          signal.addEventListener('abort', () =>
            reject(new BoardfleetError('flash-aborted', 'Flashing was cancelled')),
          );
        }),
    });
    controller.abort();
    expect(await flashing).toEqual([
      { port: 'a', board: 'uno', verified: false, code: 'flash-aborted', error: 'Flashing was cancelled' },
      { port: 'b', board: 'uno', verified: false, code: 'flash-aborted', error: 'Flashing was cancelled' },
    ]);
  });

  it.each([
    {
      error: new BoardfleetError('port-busy', 'x is busy'),
      expected: { code: 'port-busy', error: 'x is busy' },
    },
    { error: new Error('two\n  lines'), expected: { code: 'unexpected', error: 'two lines' } },
    { error: 'a string', expected: { code: 'unexpected', error: 'a string' } },
  ])('puts the reason on one line: $expected.error', ({ error, expected }) => {
    expect(reasonOf(error)).toEqual(expected);
  });
});
