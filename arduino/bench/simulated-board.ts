import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { type Board, getBoard } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { BenchBuild, defaultCacheDirectory } from './bench-build.repository.ts';
import { type McuPin, PinMap } from './pin-map.ts';

export interface StartOptions {
  /** A board id from the catalogue: uno, nano, nano:old-bootloader, pro-mini-5v, mega2560. */
  board: string;
  /** Where the port link, control socket and the board's flash live; reusing one keeps what was flashed. */
  stateDir?: string;
  /** Keeps running after this process exits (`boardfleet bench start`). */
  detached?: boolean;
  build?: BenchBuild;
}

/** What `bench start` leaves in the state dir, so other commands can find the board. */
interface BenchRecord {
  board: string;
  pid: number;
  portPath: string;
}

const START_TIMEOUT_MS = 10_000;
const REPLY_TIMEOUT_MS = 5_000;

export function defaultBenchDirectory(board: string): string {
  return join(defaultCacheDirectory(), 'bench', board);
}

/**
 * A simulated Arduino-class board: simavr running the board's real bootloader and whatever was
 * flashed onto it, behind a real pseudo-terminal (`portPath`) that serialport, avrdude and our
 * flasher open like a USB port. Opening the port resets the MCU into its bootloader, as the
 * DTR line does on a real board. Pins are watched and driven through the harness's control
 * socket, by Arduino name (`D13`, `A0`) or port pin (`PB5`).
 */
export class SimulatedBoard {
  private socket: Socket | null = null;
  private readonly pinLevels = new Map<string, 0 | 1>();
  private readonly pinWaiters = new Set<() => void>();
  private pendingReply: ((line: string) => void) | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly board: Board,
    readonly stateDir: string,
    readonly portPath: string,
    readonly pid: number,
    private readonly child: ChildProcess | null,
    private readonly pins: PinMap,
  ) {}

  /** Builds what is needed on first use, starts the board, and resolves once its port exists. */
  static async start(options: StartOptions): Promise<SimulatedBoard> {
    const board = getBoard(options.board);
    const build = options.build ?? new BenchBuild();
    const [harness, bootloader] = await Promise.all([build.harness(), build.bootloader(board.bootloader)]);
    const stateDir = resolve(options.stateDir ?? defaultBenchDirectory(board.id));
    mkdirSync(stateDir, { recursive: true });
    const running = readRecord(stateDir);
    if (running && isAlive(running.pid)) {
      throw new BoardfleetError(
        'bench-busy',
        `A simulated ${running.board} already runs in ${stateDir} (pid ${running.pid}, port ${running.portPath}); stop it with: boardfleet bench stop --state-dir ${stateDir}`,
      );
    }
    const log = openSync(join(stateDir, 'harness.log'), 'w');
    const child = spawn(
      harness,
      [
        '--mcu',
        board.mcu,
        '--clock',
        String(board.clockHz),
        '--boot-address',
        `0x${bootloader.address.toString(16)}`,
        '--bootloader',
        bootloader.hexPath,
        '--flash-file',
        join(stateDir, 'flash.bin'),
        '--state-dir',
        stateDir,
      ],
      { stdio: ['ignore', 'pipe', log], detached: options.detached ?? false },
    );
    closeSync(log);
    const portPath = await waitForReady(child, stateDir);
    const record: BenchRecord = { board: board.id, pid: child.pid!, portPath };
    writeFileSync(join(stateDir, 'board.json'), `${JSON.stringify(record, null, 2)}\n`);
    if (options.detached) {
      child.stdout?.destroy();
      child.unref();
    }
    const simulated = new SimulatedBoard(
      board,
      stateDir,
      portPath,
      child.pid!,
      options.detached ? null : child,
      PinMap.forBoard(board),
    );
    if (!options.detached) await simulated.openControl();
    return simulated;
  }

  /** A board `boardfleet bench start` left running. */
  static async attach(stateDir: string): Promise<SimulatedBoard> {
    const record = readRecord(stateDir);
    if (!record || !isAlive(record.pid)) {
      throw new BoardfleetError(
        'bench-not-running',
        `No simulated board runs in ${stateDir}; start one with: boardfleet bench start uno`,
      );
    }
    const board = getBoard(record.board);
    const attached = new SimulatedBoard(
      board,
      stateDir,
      record.portPath,
      record.pid,
      null,
      PinMap.forBoard(board),
    );
    await attached.openControl();
    return attached;
  }

  /** Resets the MCU into its bootloader, as pressing the reset button does. */
  async reset(): Promise<void> {
    await this.command('reset');
  }

  async readPin(name: string): Promise<0 | 1> {
    const pin = this.pins.resolve(name);
    const reply = await this.command(`get ${pin.port}${pin.bit}`);
    return reply.endsWith(' 1') ? 1 : 0;
  }

  /** Resolves when the pin is at `level` (at once if it already is). */
  async waitForPin(name: string, level: 0 | 1, timeoutMs = 5_000): Promise<void> {
    const pin = this.pins.resolve(name);
    const key = `${pin.port}${pin.bit}`;
    if (!this.pinLevels.has(key)) this.pinLevels.set(key, await this.readPin(`P${key}`));
    if (this.pinLevels.get(key) === level) return;
    await new Promise<void>((resolvePromise, reject) => {
      const timer = setTimeout(() => {
        this.pinWaiters.delete(check);
        reject(new Error(`pin ${name} (P${key}) did not go to ${level} within ${timeoutMs} ms`));
      }, timeoutMs);
      const check = () => {
        if (this.pinLevels.get(key) !== level) return;
        clearTimeout(timer);
        this.pinWaiters.delete(check);
        resolvePromise();
      };
      this.pinWaiters.add(check);
    });
  }

  /** Drives an input pin from outside, as a button or a sensor's digital output does. */
  async setDigitalInput(name: string, level: 0 | 1): Promise<void> {
    const pin = this.pins.resolve(name);
    await this.command(`set ${pin.port}${pin.bit} ${level}`);
  }

  /** Puts a voltage on an analog input (0 to 5000 mV against the 5 V reference). */
  async setAnalogMillivolts(name: string, millivolts: number): Promise<void> {
    const pin: McuPin = this.pins.resolve(name);
    if (pin.adcChannel === undefined)
      throw new BoardfleetError('pin-unknown', `${name} is not an analog input`);
    await this.command(`adc ${pin.adcChannel} ${Math.round(millivolts)}`);
  }

  /** Stops the board; its flash is written to the state dir first, so a restart keeps it. */
  async stop(): Promise<void> {
    this.socket?.destroy();
    this.socket = null;
    if (!isAlive(this.pid)) return;
    const exited = this.child
      ? new Promise<void>((resolvePromise) => {
          if (this.child!.exitCode !== null || this.child!.signalCode !== null) resolvePromise();
          else this.child!.once('exit', () => resolvePromise());
        })
      : waitUntilGone(this.pid);
    process.kill(this.pid, 'SIGTERM');
    await exited;
    rmSync(join(this.stateDir, 'board.json'), { force: true });
  }

  /** Ends the board at once, without saving its flash: a board unplugged. */
  kill(): void {
    this.socket?.destroy();
    if (isAlive(this.pid)) process.kill(this.pid, 'SIGKILL');
  }

  private async openControl(): Promise<void> {
    const socket = connect(join(this.stateDir, 'control.sock'));
    await new Promise<void>((resolvePromise, reject) => {
      socket.once('connect', resolvePromise);
      socket.once('error', reject);
    });
    socket.on('error', () => {});
    createInterface({ input: socket }).on('line', (line) => {
      const change = /^pin ([A-L])(\d) ([01])$/.exec(line);
      if (change) {
        this.pinLevels.set(`${change[1]}${change[2]}`, Number(change[3]) as 0 | 1);
        for (const waiter of [...this.pinWaiters]) waiter();
        return;
      }
      const reply = this.pendingReply;
      this.pendingReply = null;
      reply?.(line);
    });
    this.socket = socket;
  }

  /** One command at a time: the harness answers in order. */
  private command(line: string): Promise<string> {
    const next = this.queue.then(
      () =>
        new Promise<string>((resolvePromise, reject) => {
          if (!this.socket)
            return reject(new BoardfleetError('bench-not-running', 'The simulated board was stopped'));
          const timer = setTimeout(
            () =>
              reject(
                new BoardfleetError('bench-not-responding', `The simulated board did not answer "${line}"`),
              ),
            REPLY_TIMEOUT_MS,
          );
          this.pendingReply = (reply) => {
            clearTimeout(timer);
            if (reply.startsWith('error '))
              reject(new BoardfleetError('bench-command-failed', `${line}: ${reply.slice(6)}`));
            else resolvePromise(reply);
          };
          this.socket.write(`${line}\n`);
        }),
    );
    this.queue = next.catch(() => {});
    return next;
  }
}

/** The running boards under a directory of state dirs (the default bench directory). */
export function listBenchBoards(
  root = join(defaultCacheDirectory(), 'bench'),
): Array<BenchRecord & { stateDir: string }> {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort()
    .map((name) => ({ stateDir: join(root, name), record: readRecord(join(root, name)) }))
    .filter(
      (entry): entry is { stateDir: string; record: BenchRecord } =>
        !!entry.record && isAlive(entry.record.pid),
    )
    .map((entry) => ({ ...entry.record, stateDir: entry.stateDir }));
}

function readRecord(stateDir: string): BenchRecord | null {
  try {
    return JSON.parse(readFileSync(join(stateDir, 'board.json'), 'utf8')) as BenchRecord;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntilGone(pid: number): Promise<void> {
  while (isAlive(pid)) await new Promise((resolvePromise) => setTimeout(resolvePromise, 20));
}

async function waitForReady(child: ChildProcess, stateDir: string): Promise<string> {
  return new Promise<string>((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new BoardfleetError(
          'bench-start-failed',
          `The simulated board did not start within ${START_TIMEOUT_MS} ms`,
        ),
      );
    }, START_TIMEOUT_MS);
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      clearTimeout(timer);
      const portPath = /^ready (.+)$/.exec(line)?.[1];
      if (portPath) resolvePromise(portPath);
      else reject(new BoardfleetError('bench-start-failed', `The simulated board said: ${line}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      const logPath = join(stateDir, 'harness.log');
      const log = existsSync(logPath) ? readFileSync(logPath, 'utf8').trim() : '';
      reject(
        new BoardfleetError(
          'bench-start-failed',
          `The simulated board exited (status ${code}) before it was ready${log ? `: ${log}` : ''}`,
        ),
      );
    });
  });
}
