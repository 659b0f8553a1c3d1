import type { EventEmitter } from 'node:events';
import firmataIo, { type Firmata, type FirmataTransport } from 'firmata-io';
import { BoardfleetError } from '../../protocol/errors.ts';
import { openSerialTransport } from './serial-transport.repository.ts';

/** Where the Uno, Nano and Pro Mini wire their built-in LED. */
const DEFAULT_LED_PIN = 13;
const LATENCY_SAMPLES = 5;
const QUERY_TIMEOUT_MS = 1000;
const ASK_VERSION_AFTER_MS = 2500;

/** A serial port, or anything that behaves like one (a simulated board in tests). */
export interface ProbeTransport extends FirmataTransport {
  close(callback: (error?: Error | null) => void): unknown;
}

export interface ProbeOptions {
  portPath: string;
  /** How long to wait for the Firmata handshake (the board resets when the port opens). */
  timeoutMs?: number;
  /** The pin the self-test toggles; it must be safe to drive (an LED). */
  ledPin?: number;
  /** Opens the link to the board; defaults to the serial port at Firmata's 57600 baud. */
  openTransport?: (portPath: string) => Promise<ProbeTransport>;
}

export interface SelfTestStep {
  wrote: 0 | 1;
  readBack: number | null;
}

export type ProbeResult =
  | {
      status: 'firmata';
      portPath: string;
      firmware: { name: string; version: string };
      protocolVersion: string;
      /** Time from opening the port to the completed handshake, reset and bootloader included. */
      readyMs: number;
      pinCount: number;
      analogPinCount: number;
      /** Mode name to the pins that support it. */
      capabilities: Record<string, number[]>;
      /** Round trips of a pin state query, in milliseconds. */
      latencyMs: { min: number; median: number; max: number };
      selfTest: { pin: number; passed: boolean; steps: SelfTestStep[] };
    }
  | {
      status: 'not-firmata';
      portPath: string;
      /** What was seen instead, for a person to act on. */
      reason: string;
      bytesReceived: number;
    };

/**
 * Checks that a board answers as a Firmata device and works: firmware name and version, pins
 * and capabilities, round-trip latency, and a self-test that toggles the LED pin and reads it
 * back by pin state query. A board that is not running Firmata gives a `not-firmata` result
 * once `timeoutMs` has passed. Throws when the port cannot be opened or the LED pin cannot be
 * an output.
 */
export async function probeBoard(options: ProbeOptions): Promise<ProbeResult> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const ledPin = options.ledPin ?? DEFAULT_LED_PIN;
  const opened = performance.now();
  const transport = await (options.openTransport ?? openSerialTransport)(options.portPath);
  let bytesReceived = 0;
  const countBytes = (data: Buffer) => {
    bytesReceived += data.length;
  };
  transport.on('data', countBytes);
  // A board that did not reset on open never announces itself: ask outright once an Uno's
  // reset and bootloader wait (about 1.5 s) are surely over.
  const io = new firmataIo.Firmata(transport, {
    reportVersionTimeout: Math.min(ASK_VERSION_AFTER_MS, Math.floor(timeoutMs / 2)),
  });
  // A version query firmata-io sends after we gave up lands on a closed port; its error is moot.
  io.on('error', () => {});
  try {
    const ready = await waitFor(io, 'ready', timeoutMs);
    if (!ready) {
      return {
        status: 'not-firmata',
        portPath: options.portPath,
        bytesReceived,
        reason:
          bytesReceived === 0
            ? `No answer on ${options.portPath} within ${timeoutMs} ms: the board is silent, so it is not running Firmata at 57600 baud.`
            : `${options.portPath} sent ${bytesReceived} bytes in ${timeoutMs} ms but no Firmata handshake: the board runs other firmware (or another baud rate).`,
      };
    }
    const readyMs = Math.round(performance.now() - opened);
    if (ledPin >= io.pins.length || !io.pins[ledPin]?.supportedModes.includes(io.MODES.OUTPUT)) {
      throw new BoardfleetError(
        'probe-failed',
        `Pin ${ledPin} cannot be an output on this board, so it cannot be self-tested`,
      );
    }
    const latencies: number[] = [];
    for (let i = 0; i < LATENCY_SAMPLES; i++) {
      const started = performance.now();
      await queryPinState(io, ledPin);
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    return {
      status: 'firmata',
      portPath: options.portPath,
      firmware: {
        name: io.firmware.name ?? 'unknown',
        version: io.firmware.version
          ? `${io.firmware.version.major}.${io.firmware.version.minor}`
          : 'unknown',
      },
      protocolVersion: `${io.version.major ?? '?'}.${io.version.minor ?? '?'}`,
      readyMs,
      pinCount: io.pins.length,
      analogPinCount: io.analogPins.length,
      capabilities: describeCapabilities(io),
      latencyMs: {
        min: round(latencies[0] ?? 0),
        median: round(latencies[Math.floor(latencies.length / 2)] ?? 0),
        max: round(latencies.at(-1) ?? 0),
      },
      selfTest: await selfTest(io, ledPin),
    };
  } finally {
    transport.off('data', countBytes);
    await closeTransport(transport);
  }
}

/** Drives the LED pin high then low, reading each level back from the board. */
async function selfTest(
  io: Firmata,
  pin: number,
): Promise<{ pin: number; passed: boolean; steps: SelfTestStep[] }> {
  io.pinMode(pin, io.MODES.OUTPUT);
  const steps: SelfTestStep[] = [];
  for (const level of [1, 0] as const) {
    io.digitalWrite(pin, level);
    steps.push({ wrote: level, readBack: await queryPinState(io, pin) });
  }
  return { pin, passed: steps.every((step) => step.readBack === step.wrote), steps };
}

async function queryPinState(io: Firmata, pin: number): Promise<number | null> {
  const answered = new Promise<true>((resolve) => io.queryPinState(pin, () => resolve(true)));
  const result = await Promise.race([answered, sleep(QUERY_TIMEOUT_MS).then(() => false as const)]);
  return result ? (io.pins[pin]?.state ?? null) : null;
}

function describeCapabilities(io: Firmata): Record<string, number[]> {
  const names = new Map(Object.entries(io.MODES).map(([name, value]) => [value, name]));
  const capabilities: Record<string, number[]> = {};
  io.pins.forEach((pin, index) => {
    for (const mode of pin.supportedModes) {
      const name = names.get(mode) ?? `MODE_${mode}`;
      capabilities[name] = [...(capabilities[name] ?? []), index];
    }
  });
  return capabilities;
}

function waitFor(emitter: EventEmitter, event: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      emitter.off(event, onEvent);
      resolve(false);
    }, timeoutMs);
    const onEvent = () => {
      clearTimeout(timer);
      resolve(true);
    };
    emitter.once(event, onEvent);
  });
}

function closeTransport(transport: ProbeTransport): Promise<void> {
  // Closing an already closed port reports an error we have no use for.
  return new Promise((resolve) => transport.close(() => resolve()));
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const round = (ms: number) => Math.round(ms * 10) / 10;
