// `npm run bench -- flash [--kib 30]`: flash + verify of a ~30 KB image onto the simulated Uno
// (simavr running the real optiboot at 115200 baud) with our flasher and with avrdude, in the same
// run; the floor is the serial line itself: every byte both ways, 10 bits each, at 115200 baud.
// Then the flash station (`flash --all`): three simulated Unos at once against one alone, with
// the CPU the boards and the flasher used, since each board is a simavr process paced to real time.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { startSimulatedBoard, type SimulatedBoard } from '../mcu/simulator/simulated-board.ts';
import { flashBoard } from '../mcu/flasher/flash-board.ts';
import { flashStation } from '../mcu/flasher/flash-station.ts';
import { getBoard } from '../boards/board-catalogue.ts';

const execFileAsync = promisify(execFile);
const RUNS = 3;
const STATION_BOARDS = 3;
/** The goal: three boards at once in at most this multiple of one board's time. */
const STATION_GOAL_RATIO = 1.5;

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { kib: { type: 'string', default: '30' } } });
  const board = getBoard('uno');
  const size = Math.min(Number(values.kib) * 1024, board.applicationFlashSize);
  const work = mkdtempSync(join(tmpdir(), 'flash-bench-'));
  const hexPath = join(work, 'image.hex');
  writeFileSync(hexPath, toIntelHex(pseudoRandomImage(size)));
  const pageSize = board.flash.pageSize;
  const pages = Math.ceil(size / pageSize);
  // STK500v1 per page: LOAD_ADDRESS (4 out, 2 back) + PROG_PAGE (5 + page out, 2 back), then for
  // verify LOAD_ADDRESS again + READ_PAGE (5 out, page + 2 back). Commands wait for their answers.
  const wireBytes = pages * (4 + 2 + 5 + pageSize + 2 + 4 + 2 + 5 + pageSize + 2);
  const floorSeconds = (wireBytes * 10) / board.upload.baudRate;
  process.stdout.write(
    `flash benchmark: ${size} bytes (${pages} pages) to a simulated Uno at ${board.upload.baudRate} baud, write + verify, ${RUNS} runs each\n\n`,
  );

  const simulated = await startSimulatedBoard({ board: 'uno', stateDir: join(work, 'uno') });
  try {
    const ours: number[] = [];
    const avrdude: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const started = performance.now();
      await flashBoard({ board, hexPath, portPath: simulated.portPath });
      ours.push((performance.now() - started) / 1000);
      const startedAvrdude = performance.now();
      await execFileAsync('avrdude', [
        '-q',
        '-q',
        '-c',
        'arduino',
        '-p',
        'm328p',
        '-b',
        String(board.upload.baudRate),
        '-P',
        simulated.portPath,
        '-U',
        `flash:w:${hexPath}:i`,
      ]).catch((error: { stderr?: string }) => {
        if (!/TIOCMGET/.test(error.stderr ?? '')) throw error;
      });
      avrdude.push((performance.now() - startedAvrdude) / 1000);
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const rows: Array<[string, number]> = [
      ['boardfleet flash', median(ours)],
      ['avrdude -c arduino (baseline)', median(avrdude)],
      ['wire-limit floor', floorSeconds],
    ];
    process.stdout.write(`${'tool'.padEnd(32)}${'seconds (median)'.padEnd(20)}bytes/s of image\n`);
    for (const [label, seconds] of rows) {
      process.stdout.write(
        `${label.padEnd(32)}${seconds.toFixed(2).padEnd(20)}${Math.round(size / seconds)}\n`,
      );
    }
    process.stdout.write(
      `\nBoth tools include the reset into optiboot and its start-up (about 0.4 s of LED flashes);\n` +
        `the floor counts only the ${wireBytes} bytes on the line (10 bits each).\n`,
    );
    await benchStation({ board, hexPath, work, first: simulated, size });
  } finally {
    await simulated.stop();
  }
}

/** One board alone, then three at once through the flash station, alternating, `RUNS` times each. */
async function benchStation(context: {
  board: ReturnType<typeof getBoard>;
  hexPath: string;
  work: string;
  first: SimulatedBoard;
  size: number;
}): Promise<void> {
  const { board, hexPath, work, first } = context;
  const others = await Promise.all(
    Array.from({ length: STATION_BOARDS - 1 }, (_, index) =>
      startSimulatedBoard({ board: 'uno', stateDir: join(work, `station-${index + 1}`) }),
    ),
  );
  const boards = [first, ...others];
  try {
    const flash = (portPath: string, signal?: AbortSignal) =>
      flashBoard({ board, hexPath, portPath, ...(signal ? { signal } : {}) });
    const one: Sample[] = [];
    const three: Sample[] = [];
    for (let i = 0; i < RUNS; i++) {
      one.push(await measure(boards, () => flash(first.portPath)));
      three.push(
        await measure(boards, async () => {
          const outcomes = await flashStation({
            ports: boards.map((simulated) => simulated.portPath),
            board,
            flash,
          });
          const failed = outcomes.find((outcome) => !outcome.verified);
          if (failed && !failed.verified) throw new Error(`${failed.port}: ${failed.error}`);
        }),
      );
    }
    const median = (samples: Sample[]) =>
      [...samples].sort((a, b) => a.seconds - b.seconds)[Math.floor(samples.length / 2)]!;
    const alone = median(one);
    const together = median(three);
    const ratio = together.seconds / alone.seconds;
    process.stdout.write(
      `\nflash station: the same image onto ${STATION_BOARDS} simulated Unos at once vs one alone, ${RUNS} runs each ` +
        `(${cpus().length} cores; ${STATION_BOARDS} simavr processes run all along)\n\n` +
        `${'run'.padEnd(32)}${'seconds (median)'.padEnd(20)}${'image bytes/s'.padEnd(18)}CPU cores busy (boards + flasher)\n`,
    );
    for (const [label, sample, boardsFlashed] of [
      ['one board', alone, 1],
      [`${STATION_BOARDS} boards at once (--all)`, together, STATION_BOARDS],
    ] as const) {
      process.stdout.write(
        `${label.padEnd(32)}${sample.seconds.toFixed(2).padEnd(20)}${String(Math.round((context.size * boardsFlashed) / sample.seconds)).padEnd(18)}` +
          `${(sample.boardCpuSeconds / sample.seconds).toFixed(2)} + ${(sample.flasherCpuSeconds / sample.seconds).toFixed(2)}\n`,
      );
    }
    process.stdout.write(
      `\nratio ${STATION_BOARDS} boards / one: ${ratio.toFixed(2)}x (goal ≤ ${STATION_GOAL_RATIO}x: ${ratio <= STATION_GOAL_RATIO ? 'met' : 'missed'})\n`,
    );
  } finally {
    await Promise.all(others.map((simulated) => simulated.stop()));
  }
}

interface Sample {
  seconds: number;
  /** CPU time of every simulated board's process (simavr) during the run. */
  boardCpuSeconds: number;
  /** CPU time of this process (the flasher, serial I/O) during the run. */
  flasherCpuSeconds: number;
}

async function measure(boards: SimulatedBoard[], work: () => Promise<unknown>): Promise<Sample> {
  const boardCpu = () => boards.reduce((sum, simulated) => sum + processCpuSeconds(simulated.pid), 0);
  const boardsBefore = boardCpu();
  const flasherBefore = process.cpuUsage();
  const started = performance.now();
  await work();
  const seconds = (performance.now() - started) / 1000;
  const flasher = process.cpuUsage(flasherBefore);
  return {
    seconds,
    boardCpuSeconds: boardCpu() - boardsBefore,
    flasherCpuSeconds: (flasher.user + flasher.system) / 1e6,
  };
}

/** utime + stime from /proc/<pid>/stat (fields 14 and 15, after the command in parentheses). */
function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** Linux's USER_HZ: /proc counts CPU time in these ticks, 100 on every architecture it runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** A deterministic image: the same bytes every run, not compressible into a lucky case. */
function pseudoRandomImage(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let state = 0x2545f491;
  for (let i = 0; i < size; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

function toIntelHex(bytes: Uint8Array): string {
  const record = (address: number, type: number, data: Uint8Array) => {
    const fields = [data.length, address >> 8, address & 0xff, type, ...data];
    const checksum = (0x100 - (fields.reduce((sum, value) => sum + value, 0) & 0xff)) & 0xff;
    return `:${[...fields, checksum].map((value) => value.toString(16).padStart(2, '0').toUpperCase()).join('')}`;
  };
  const lines: string[] = [];
  for (let address = 0; address < bytes.length; address += 16)
    lines.push(record(address, 0, bytes.subarray(address, address + 16)));
  lines.push(record(0, 1, new Uint8Array()));
  return `${lines.join('\n')}\n`;
}
