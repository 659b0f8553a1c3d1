// One bench Pico: rp2040js running the flash image in `--flash-file`, paced to real time, UART0
// on the pty that `--relay` (harness/pty-relay.c) owns, and the control socket. Started by
// `startSimulatedBoard({ board: 'pico' })` (rp2040/pico-launch.ts); see mcu/simulator/README.md.
import { spawn } from 'node:child_process';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { PicoControlServer } from './pico-control.ts';
import { PicoMachine } from './pico-machine.ts';

/** Behind the wall clock by more than this (a stopped process, a busy machine): do not race to catch up. */
const MAX_LAG_NANOS = 200e6;
/** Board time run per turn of the event loop, so the control socket and the port stay responsive. */
const SLICE_NANOS = 5e6;
const SLICE_INSTRUCTIONS = 200_000;
/** The longest the loop sleeps while the core does (host bytes and commands wake it sooner). */
const MAX_IDLE_MS = 50;

const { values } = parseArgs({
  options: {
    'state-dir': { type: 'string' },
    'flash-file': { type: 'string' },
    'flash-size': { type: 'string' },
    relay: { type: 'string' },
  },
});
const stateDir = values['state-dir']!;
const flashFile = values['flash-file']!;
const flash = new Uint8Array(Number(values['flash-size'])).fill(0xff);
// Written by the launcher (rp2040/pico-launch.ts); nothing at run time writes the flash.
const saved = await readFile(flashFile).catch(() => undefined);
if (saved?.length === flash.length) flash.set(saved);
const ttyLink = join(stateDir, 'tty');

const relay = spawn(values.relay!, ['--link', ttyLink], { stdio: ['pipe', 'pipe', 'inherit', 'pipe'] });
const relayEvents = createInterface({ input: relay.stdio[3] as NodeJS.ReadableStream });

let hostOpen = false;
let hostBaud = 0;
const fromHost: number[] = [];
let toHost: number[] = [];
let stopping = false;
/** The one pending turn of the run loop. */
let nextTurn: { cancel(): void } | undefined;

const simulatedMs = () => Math.round(machine.nanos / 1e6);
const control = new PicoControlServer({
  reset: () => {
    reset('external');
    wake();
    return simulatedMs();
  },
  readPin: (gpio) => machine.readPin(gpio),
  setInput: (gpio, level) => {
    machine.setInput(gpio, level);
    wake();
  },
  setAdcMillivolts: (channel, millivolts) => machine.setAdcMillivolts(channel, millivolts),
  status: () =>
    [
      `state=${machine.halted ? 'halted' : 'running'}`,
      `seconds=${machine.halted ? 0 : (machine.nanos / 1e9).toFixed(3)}`,
      `behind=${((wallTargetNanos() - machine.nanos) / 1e9).toFixed(3)}`,
      `uart-baud=${machine.uartBaud}`,
      `host=${hostOpen ? 'open' : 'closed'}`,
      `host-baud=${hostOpen ? hostBaud : 0}`,
    ].join(' '),
  quit: () => void quit(),
});

const machine = new PicoMachine(flash, {
  pin: (gpio, level) => control.broadcast(`pin GP${gpio} ${level} ${simulatedMs()}`),
  uartByte: (byte) => hostOpen && toHost.push(byte),
  halted: (why) => control.broadcast(`halted ${why}`),
});

/** The board time the wall clock says it should be: `base` pairs one with the other. */
let base = { wallMs: performance.now(), nanos: 0 };
const wallTargetNanos = () => base.nanos + (performance.now() - base.wallMs) * 1e6;
const rebase = () => (base = { wallMs: performance.now(), nanos: machine.nanos });
let nextByteNanos = 0;

function reset(cause: 'external' | 'power-on'): void {
  machine.reset();
  fromHost.length = 0;
  toHost = [];
  rebase();
  control.broadcast(`reset ${cause}`);
}

/** Ten bit times at the rate the firmware set: a byte from the host reaches the UART at a real line's pace. */
const byteNanos = () => (10 * 1e9) / (machine.uartBaud || 115_200);

/** Runs the board up to the wall clock, feeding host bytes on the way; then sleeps until it has work. */
function runSlice(): void {
  nextTurn = undefined;
  if (stopping) return;
  let target = wallTargetNanos();
  if (target - machine.nanos > MAX_LAG_NANOS) {
    rebase();
    target = machine.nanos;
  }
  const sliceEnd = Math.min(target, machine.nanos + SLICE_NANOS);
  while (machine.nanos < sliceEnd) {
    if (fromHost.length > 0 && machine.nanos >= nextByteNanos) {
      if (machine.receiveByte(fromHost[0]!)) fromHost.shift();
      nextByteNanos = machine.nanos + byteNanos();
    }
    const until =
      fromHost.length > 0 ? Math.min(sliceEnd, Math.max(nextByteNanos, machine.nanos + 1)) : sliceEnd;
    machine.runUntil(until, SLICE_INSTRUCTIONS);
  }
  if (toHost.length > 0) {
    relay.stdin!.write(Buffer.from(toHost));
    toHost = [];
  }
  const nextWork = Math.min(machine.nextAlarmNanos, fromHost.length > 0 ? nextByteNanos : Infinity);
  const idleMs = (nextWork - wallTargetNanos()) / 1e6;
  scheduleTurn(Math.min(idleMs, MAX_IDLE_MS));
}

/** Behind the wall clock the loop runs on at once: a timer would wait a millisecond at least. */
function scheduleTurn(delayMs: number): void {
  nextTurn?.cancel();
  if (delayMs <= 0) {
    const immediate = setImmediate(runSlice);
    nextTurn = { cancel: () => clearImmediate(immediate) };
  } else {
    const timer = setTimeout(runSlice, delayMs);
    nextTurn = { cancel: () => clearTimeout(timer) };
  }
}

/** Host bytes and control commands may give the core work before its next alarm. */
function wake(): void {
  if (!stopping) scheduleTurn(0);
}

async function quit(): Promise<void> {
  if (stopping) return;
  stopping = true;
  nextTurn?.cancel();
  await rm(join(stateDir, 'bench.pid'), { force: true });
  control.close();
  await rm(join(stateDir, 'control.sock'), { force: true });
  relay.stdin!.end();
  relay.once('exit', () => process.exit(0));
}

relay.stdout!.on('data', (bytes: Buffer) => {
  if (!hostOpen) return;
  for (const byte of bytes) fromHost.push(byte);
  wake();
});
// A relay that has gone is reported by its exit, below; a write to it meanwhile is not an error.
relay.stdin!.on('error', () => undefined);
relay.once('exit', (code) => {
  if (stopping) return;
  process.stderr.write(`pico bench: the pty relay exited (code ${code})\n`);
  process.exit(2);
});
for (const name of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(name, () => void quit());

// The port must exist before bench.pid says the board is ready.
const ready = new Promise<void>((resolve) => {
  relayEvents.on('line', (line) => {
    const [word, detail, value] = line.split(' ');
    if (word === 'ready') resolve();
    else if (line === 'host open') {
      // Opening the port is the DTR edge that resets the board, as on the bench Uno.
      hostOpen = true;
      control.broadcast('host open');
      reset('external');
      wake();
    } else if (line === 'host close') {
      hostOpen = false;
      control.broadcast('host close');
    } else if (word === 'host' && detail === 'baud') hostBaud = Number(value);
  });
});
await ready;
await rm(join(stateDir, 'control.sock'), { force: true });
await control.listen(join(stateDir, 'control.sock'));
reset('power-on');
const pidFile = join(stateDir, 'bench.pid');
await writeFile(`${pidFile}.tmp`, `${process.pid}\n${ttyLink}\n`);
await rename(`${pidFile}.tmp`, pidFile);
runSlice();
