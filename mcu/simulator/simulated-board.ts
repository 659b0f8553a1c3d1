import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Board, getSerialBoard, isUf2Board, type Uf2Board } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { boardPins, type BoardPins } from './board-pins.ts';
import { buildBootloader } from './bootloaders.ts';
import { ControlChannel } from './control-channel.ts';
import { buildHarness } from './harness-build.ts';
import { defaultCacheDirectory, HostTools } from './host-tools.repository.ts';
import { withoutStartAddress } from './intel-hex.ts';
import { preparePicoBench } from './rp2040/pico-launch.ts';
import { PICO_ADC_REFERENCE_MV, picoPins } from './rp2040/pico-pins.ts';

/** Generous: the Pico's process starts Node and tsx first, on a machine that may be busy. */
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

export interface SimulatedBoardOptions {
  /** A board id from the catalogue: `uno`, `mega2560`, `nano:old-bootloader`, `pico`. */
  board: string;
  /** Where the flash image, the `tty` link and the control socket live; defaults to `<cache>/bench/<board>`. */
  stateDir?: string;
  /** An application to put in flash before starting, as if flashed earlier (AVR boards). */
  firmwareHex?: string;
  /** A UF2 to put in flash before starting, as if copied to its BOOTSEL drive earlier (the Pico). */
  firmwareUf2?: string;
  /** Where built bootloaders and the harness are cached; defaults to `$BOARDFLEET_CACHE_DIR` or `~/.cache/boardfleet`. */
  cacheDir?: string;
  /** Keep the board running after this process exits (`boardfleet bench start`). */
  detached?: boolean;
  tools?: HostTools;
}

export type PinLevel = 0 | 1;

export interface SimulatedBoard {
  board: Board | Uf2Board;
  stateDir: string;
  /** The serial port a host opens, like /dev/ttyACM0; opening it resets the board (into its bootloader, on AVR). */
  portPath: string;
  pid: number;
  /** Resets the MCU into its bootloader, as the reset button or a DTR pulse does; resolves with the board's simulated time then. */
  reset(): Promise<number>;
  /** The level of a digital pin (`D13`, `LED`, `A0`; `GP25` on the Pico), whether the firmware drives it or we do. */
  readPin(pin: string): Promise<PinLevel>;
  /**
   * Resolves once the pin is at `level` (now or later); rejects after `timeoutMs` of the board's
   * simulated time, which runs slower than the wall clock on a loaded machine.
   */
  waitForPin(pin: string, level: PinLevel, timeoutMs: number): Promise<void>;
  /**
   * Calls `listener` on each change of the pin's level, with the board's simulated time in ms (the
   * time firmware sees); returns the unsubscribe function.
   */
  onPinChange(pin: string, listener: (level: PinLevel, simulatedMs: number) => void): () => void;
  /** Drives a digital input from outside, like a button to GND or 5 V. */
  setDigitalInput(pin: string, level: PinLevel): Promise<void>;
  /** Puts a voltage on an analog input: 0..5000 mV against an AVR board's 5 V, 0..3300 mV on the Pico. */
  setAnalogMillivolts(pin: string, millivolts: number): Promise<void>;
  /**
   * A fault for testing read-back verify: the next page the bootloader writes (the page holding
   * `address`, if given) stores its first byte inverted. Fires once; survives resets.
   */
  corruptNextPageWrite(address?: number): Promise<void>;
  /** Ends the board: the flash image is saved, and no process is left behind. */
  stop(): Promise<void>;
  /** Lets go of a board started `detached`, leaving it running. */
  disconnect(): void;
}

/** A board in the state directory's `bench.pid`, if its process is alive. */
export interface RunningBench {
  stateDir: string;
  pid: number;
  portPath: string;
  /** The catalogue id it was started as, when known. */
  board?: string;
}

/** Children started by this process and not detached: killed if this process exits without stopping them. */
const attachedChildren = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of attachedChildren) child.kill('SIGKILL');
});

export function defaultStateDirectory(boardId: string, cacheDir = defaultCacheDirectory()): string {
  return join(cacheDir, 'bench', boardId.replace(/[^a-z0-9-]/g, '-'));
}

/**
 * Starts a simulated board: simavr running the board's own bootloader (built from Debian's
 * sources on first use) and whatever its flash holds, or for the Pico rp2040js running its flash
 * image; at real-time speed, its UART on a pty.
 */
export async function startSimulatedBoard(options: SimulatedBoardOptions): Promise<SimulatedBoard> {
  const simulated = simulatedBoardOf(options.board);
  const { board } = simulated;
  const tools = options.tools ?? new HostTools();
  const cacheDir = options.cacheDir ?? defaultCacheDirectory();
  const stateDir = resolve(options.stateDir ?? defaultStateDirectory(board.id, cacheDir));

  await mkdir(stateDir, { recursive: true });
  const running = await findRunningBench(stateDir);
  if (running) {
    throw new BoardfleetError(
      'bench-board-running',
      `A simulated board already runs in ${stateDir} (pid ${running.pid}, port ${running.portPath}); stop it with "boardfleet bench stop --state-dir ${stateDir}"`,
    );
  }
  const launch =
    simulated.family === 'uf2'
      ? await preparePicoBench({
          board: simulated.board,
          stateDir,
          firmwareUf2: options.firmwareUf2,
          cacheDir,
          tools,
        })
      : await prepareAvrBench(simulated.board, stateDir, options.firmwareHex, { cacheDir, tools });
  await rm(join(stateDir, 'bench.pid'), { force: true });
  await writeFile(join(stateDir, 'board'), `${board.id}\n`);

  const logPath = join(stateDir, 'bench.log');
  const log = openSync(logPath, 'w');
  const child = spawn(launch.command, launch.args, {
    stdio: ['ignore', log, log],
    detached: options.detached ?? false,
  });
  closeSync(log);
  if (options.detached) child.unref();
  else attachedChildren.add(child);
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  exited.then(() => attachedChildren.delete(child));

  try {
    const portPath = await waitForReady(stateDir, child, exited, logPath);
    const control = await ControlChannel.connect(join(stateDir, 'control.sock'));
    return attach({ ...simulated, stateDir, portPath, pid: child.pid!, control, exited });
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }
}

/** The harness's command line for an AVR board: its bootloader (built on first use) and flash file. */
async function prepareAvrBench(
  board: Board,
  stateDir: string,
  firmwareHex: string | undefined,
  build: { cacheDir: string; tools: HostTools },
): Promise<{ command: string; args: string[] }> {
  const bootloader = await buildBootloader(board.bootloader, build);
  const harness = await buildHarness(build);
  const args = [
    '--mcu',
    board.mcu,
    '--clock',
    String(board.clockHz),
    '--boot-address',
    `0x${(board.flash.size - board.flash.bootloaderSize).toString(16)}`,
    '--bootloader',
    bootloader.hexPath,
    '--flash-file',
    join(stateDir, `flash-${board.mcu}.bin`),
    '--state-dir',
    stateDir,
  ];
  if (firmwareHex) {
    const appHex = join(stateDir, 'app.hex');
    await writeFile(appHex, withoutStartAddress(await readFile(firmwareHex, 'utf8')));
    args.push('--app-hex', appHex);
  }
  return { command: harness, args };
}

type SimulatedKind =
  | { family: 'mcu'; board: Board; pins: BoardPins; maxMillivolts: number }
  | { family: 'uf2'; board: Uf2Board; pins: BoardPins; maxMillivolts: number };

/** The board, its pin names and its analog range; a board the simulators cannot run is an error. */
function simulatedBoardOf(boardId: string): SimulatedKind {
  const board = getSerialBoard(boardId);
  // The board file allows only the RP2040 among UF2 boards, which rp2040js runs.
  if (isUf2Board(board)) {
    return { family: 'uf2', board, pins: picoPins(board), maxMillivolts: PICO_ADC_REFERENCE_MV };
  }
  if (board.bootloader.startsWith('caterina')) {
    throw new BoardfleetError(
      'board-not-simulated',
      `${board.name} talks USB from the MCU itself (${board.bootloader}), which simavr cannot present as a serial port; simulate an uno, nano or mega2560 instead`,
    );
  }
  return { family: 'mcu', board, pins: boardPins(board), maxMillivolts: 5000 };
}

/** Connects to a board that is already running in `stateDir` (started detached, say). */
export async function connectSimulatedBoard(stateDir: string, boardId: string): Promise<SimulatedBoard> {
  const simulated = simulatedBoardOf(boardId);
  const running = await findRunningBench(resolve(stateDir));
  if (!running)
    throw new BoardfleetError('bench-board-not-running', `No simulated board runs in ${stateDir}`);
  const control = await ControlChannel.connect(join(running.stateDir, 'control.sock'));
  const exited = waitForProcessExit(running.pid);
  return attach({ ...running, ...simulated, control, exited });
}

/** Reads `bench.pid`; undefined when there is none or its process has ended. */
export async function findRunningBench(stateDir: string): Promise<RunningBench | undefined> {
  let text: string;
  try {
    text = await readFile(join(stateDir, 'bench.pid'), 'utf8');
  } catch {
    return undefined;
  }
  const [pidText, portPath] = text.split('\n');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || !portPath || !isAlive(pid)) return undefined;
  const board = (await readFile(join(stateDir, 'board'), 'utf8').catch(() => '')).trim() || undefined;
  return { stateDir, pid, portPath, board };
}

/** Boards running in the default bench directories (`<cache>/bench/*`). */
export async function listRunningBenches(cacheDir = defaultCacheDirectory()): Promise<RunningBench[]> {
  const benchRoot = join(cacheDir, 'bench');
  const entries = await readdir(benchRoot).catch(() => [] as string[]);
  const found = await Promise.all(entries.sort().map((entry) => findRunningBench(join(benchRoot, entry))));
  return found.filter((bench): bench is RunningBench => bench !== undefined);
}

/** Asks the board in `stateDir` to quit (saving its flash), then makes sure its process is gone. */
export async function stopBench(running: RunningBench): Promise<void> {
  try {
    const control = await ControlChannel.connect(join(running.stateDir, 'control.sock'));
    await control.command('quit').catch(() => undefined);
    control.close();
  } catch {
    process.kill(running.pid, 'SIGTERM');
  }
  await endProcess(running.pid, waitForProcessExit(running.pid));
}

function attach(parts: {
  board: Board | Uf2Board;
  stateDir: string;
  portPath: string;
  pid: number;
  pins: BoardPins;
  maxMillivolts: number;
  control: ControlChannel;
  exited: Promise<unknown>;
}): SimulatedBoard {
  const { control, pins } = parts;
  const levels = new Map<string, PinLevel>();
  control.on('event', (words) => {
    if (words[0] === 'pin' && words[1]) levels.set(words[1], words[2] === '1' ? 1 : 0);
  });

  const readPin = async (pin: string): Promise<PinLevel> => {
    const words = await control.command(`get ${pins.portPin(pin)}`);
    return words[1] === '1' ? 1 : 0;
  };
  /** The board's simulated time in ms (`status` answers `seconds=…`; a halted board says 0). */
  const simulatedNow = async (): Promise<number> => {
    const seconds = (await control.command('status')).find((word) => word.startsWith('seconds='));
    const value = Number(seconds?.slice('seconds='.length));
    return value > 0 ? value * 1000 : Number.NaN;
  };
  const onPinChange = (pin: string, listener: (level: PinLevel, simulatedMs: number) => void) => {
    const portPin = pins.portPin(pin);
    const handler = (words: string[]) => {
      if (words[0] === 'pin' && words[1] === portPin) listener(words[2] === '1' ? 1 : 0, Number(words[3]));
    };
    control.on('event', handler);
    return () => void control.off('event', handler);
  };

  return {
    board: parts.board,
    stateDir: parts.stateDir,
    portPath: parts.portPath,
    pid: parts.pid,
    reset: async () => Number((await control.command('reset'))[0]),
    readPin,
    onPinChange,
    waitForPin(pin, level, timeoutMs) {
      return new Promise((resolve, reject) => {
        let settled = false;
        let timer: NodeJS.Timeout | undefined;
        const fail = (error: Error) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          unsubscribe();
          reject(error);
        };
        const done = () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          unsubscribe();
          resolve();
        };
        // The timeout counts the board's time: on a loaded machine the simulation falls behind
        // the wall clock, and the firmware has not had its `timeoutMs` yet.
        const expireAfter = (startMs: number, wallMs: number) => {
          timer = setTimeout(() => {
            simulatedNow().then((nowMs) => {
              const left = timeoutMs - (nowMs - startMs);
              if (left <= 0 || Number.isNaN(left))
                fail(
                  new BoardfleetError(
                    'pin-timeout',
                    `${pin} did not go ${level ? 'high' : 'low'} within ${timeoutMs} ms of the board's time`,
                  ),
                );
              else expireAfter(startMs, Math.max(left, 20));
            }, fail);
          }, wallMs);
        };
        simulatedNow().then((startMs) => settled || expireAfter(startMs, timeoutMs), fail);
        // Subscribe before reading, so a change between the two is not missed.
        const unsubscribe = onPinChange(pin, (now) => now === level && done());
        readPin(pin).then((now) => now === level && done(), fail);
      });
    },
    setDigitalInput: async (pin, level) => void (await control.command(`set ${pins.portPin(pin)} ${level}`)),
    async setAnalogMillivolts(pin, millivolts) {
      if (!Number.isFinite(millivolts) || millivolts < 0 || millivolts > parts.maxMillivolts) {
        throw new BoardfleetError(
          'invalid-voltage',
          `${millivolts} mV is outside 0..${parts.maxMillivolts} mV on the ${parts.board.name}`,
        );
      }
      await control.command(`adc ${pins.adcChannel(pin)} ${Math.round(millivolts)}`);
    },
    async corruptNextPageWrite(address) {
      await control.command(
        address === undefined ? 'corrupt-next-page' : `corrupt-next-page 0x${address.toString(16)}`,
      );
    },
    async stop() {
      await control.command('quit').catch(() => undefined);
      control.close();
      await endProcess(parts.pid, parts.exited);
    },
    disconnect: () => control.close(),
  };
}

async function waitForReady(
  stateDir: string,
  child: ChildProcess,
  exited: Promise<number | null>,
  logPath: string,
): Promise<string> {
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      const log = await readFile(logPath, 'utf8').catch(() => '');
      throw new BoardfleetError(
        'bench-board-failed',
        `The simulated board exited (code ${exitCode}):\n${log.trim()}`,
      );
    }
    const running = await findRunningBench(stateDir);
    if (running && running.pid === child.pid) return running.portPath;
    await sleep(20);
  }
  throw new BoardfleetError(
    'bench-board-failed',
    `The simulated board did not come up within ${READY_TIMEOUT_MS} ms; see ${logPath}`,
  );
}

async function endProcess(pid: number, exited: Promise<unknown>): Promise<void> {
  // The timer is cancelled once the process has gone: a pending one would keep `bench stop` alive.
  const gone = async (ms: number) => {
    const timer = new AbortController();
    try {
      return await Promise.race([
        exited.then(() => true),
        sleep(ms, undefined, { signal: timer.signal }).then(() => !isAlive(pid)),
      ]);
    } finally {
      timer.abort();
    }
  };
  if (await gone(STOP_TIMEOUT_MS)) return;
  signal(pid, 'SIGTERM');
  if (await gone(STOP_TIMEOUT_MS)) return;
  signal(pid, 'SIGKILL');
  await gone(STOP_TIMEOUT_MS);
}

/** For a process that is not our child: polls until it has gone. */
async function waitForProcessExit(pid: number): Promise<void> {
  while (isAlive(pid)) await sleep(50);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}
