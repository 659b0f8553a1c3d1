// `npm run bench -- pico [--runs 3] [--probes 10]`: issue 21's figures. Build: our Firmata for the
// Pico (buildUf2Firmware, gcc-arm-none-eabi), its time and UF2 size, beside the same recipe for the
// Uno (buildFirmware, avr-gcc: the baseline) in the same run, each into a fresh folder. Probe: open
// the port → the firmware's first REPORT_VERSION, and a whole probe (handshake, capabilities,
// latency, LED self-test), against a simulated Pico (rp2040js) and a simulated Uno (simavr running
// optiboot, then our Firmata), alternating, medians of --probes.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SerialPort } from 'serialport';
import { getBoard, getUf2Board } from '../boards/board-catalogue.ts';
import { buildFirmware } from '../builder/mcu/build-firmware.ts';
import { buildUf2Firmware } from '../builder/mcu/rp2040/build-uf2-firmware.ts';
import { flashBoard } from '../mcu/flasher/flash-board.ts';
import { probeBoard } from '../mcu/probe/probe-board.ts';
import { type SimulatedBoard, startSimulatedBoard } from '../mcu/simulator/simulated-board.ts';
import { BenchUsageError } from './bench-args.ts';
import { percentile } from './stats.ts';

const REPORT_VERSION = Buffer.from([0xf9, 0x02, 0x06]);
const ANSWER_TIMEOUT_MS = 30_000;

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { runs: { type: 'string', default: '3' }, probes: { type: 'string', default: '10' } },
  });
  const runs = Number(values.runs);
  const probes = Number(values.probes);
  if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(probes) || probes < 1) {
    throw new BenchUsageError('--runs and --probes take a whole number of at least 1');
  }
  const work = mkdtempSync(join(tmpdir(), 'pico-bench-'));
  try {
    const { uf2Path, hexPath } = await benchBuilds(work, runs);
    await benchProbes(work, probes, uf2Path, hexPath);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function benchBuilds(work: string, runs: number): Promise<{ uf2Path: string; hexPath: string }> {
  const pico = getUf2Board('pico');
  const uno = getBoard('uno');
  const picoSeconds: number[] = [];
  const unoSeconds: number[] = [];
  let picoBuild: Awaited<ReturnType<typeof buildUf2Firmware>> | undefined;
  let unoBuild: Awaited<ReturnType<typeof buildFirmware>> | undefined;
  for (let i = 0; i < runs; i++) {
    let started = performance.now();
    picoBuild = await buildUf2Firmware({ recipe: 'firmata', board: 'pico', outDir: join(work, `pico-${i}`) });
    picoSeconds.push((performance.now() - started) / 1000);
    started = performance.now();
    unoBuild = await buildFirmware({ recipe: 'firmata', board: 'uno', outDir: join(work, `uno-${i}`) });
    unoSeconds.push((performance.now() - started) / 1000);
  }
  const uf2Bytes = statSync(picoBuild!.uf2Path).size;
  process.stdout.write(
    `pico benchmark: firmata built ${runs} times for each board, each into a fresh folder\n\n` +
      `${'build'.padEnd(36)}${'seconds (median)'.padEnd(20)}image\n` +
      `${'firmata for pico (.uf2)'.padEnd(36)}${median(picoSeconds).toFixed(2).padEnd(20)}` +
      `UF2 ${uf2Bytes} bytes (${uf2Bytes / 512} blocks); flash ${picoBuild!.size.flashBytes} of ${pico.flash.size} bytes, RAM ${picoBuild!.size.ramBytes} of ${pico.ramSize}\n` +
      `${'firmata for uno (.hex, baseline)'.padEnd(36)}${median(unoSeconds).toFixed(2).padEnd(20)}` +
      `flash ${unoBuild!.size.flashBytes} of ${uno.applicationFlashSize} bytes, RAM ${unoBuild!.size.ramBytes} of ${uno.ramSize}\n`,
  );
  return { uf2Path: picoBuild!.uf2Path, hexPath: unoBuild!.hexPath };
}

async function benchProbes(work: string, probes: number, uf2Path: string, hexPath: string): Promise<void> {
  const [pico, uno] = await Promise.all([
    startSimulatedBoard({ board: 'pico', stateDir: join(work, 'bench-pico'), firmwareUf2: uf2Path }),
    startSimulatedBoard({ board: 'uno', stateDir: join(work, 'bench-uno') }),
  ]);
  try {
    await flashBoard({ board: 'uno', hexPath, portPath: uno.portPath });
    const boards = [
      {
        label: 'simulated Pico (rp2040js)',
        board: pico,
        ledPin: 25,
        first: [] as number[],
        whole: [] as number[],
      },
      {
        label: 'simulated Uno (simavr, baseline)',
        board: uno,
        ledPin: 13,
        first: [] as number[],
        whole: [] as number[],
      },
    ];
    for (let i = 0; i < probes; i++) {
      for (const entry of boards) {
        entry.first.push(await firstAnswerMs(entry.board));
        const started = performance.now();
        const result = await probeBoard({ portPath: entry.board.portPath, ledPin: entry.ledPin });
        if (result.status !== 'firmata' || !result.selfTest.passed)
          throw new Error(`${entry.label} failed its probe: ${JSON.stringify(result)}`);
        entry.whole.push(performance.now() - started);
      }
    }
    process.stdout.write(
      `\nprobe latency: ${probes} probes of each board, alternating; open → answer includes the reset\n` +
        `(the Pico's is immediate; the Uno's optiboot waits for an upload first)\n\n` +
        `${'board'.padEnd(36)}${'open → REPORT_VERSION ms'.padEnd(26)}${'whole probe ms'.padEnd(18)}p90 whole\n`,
    );
    for (const entry of boards) {
      process.stdout.write(
        `${entry.label.padEnd(36)}${String(Math.round(median(entry.first))).padEnd(26)}` +
          `${String(Math.round(median(entry.whole))).padEnd(18)}${Math.round(percentile(entry.whole, 90))}\n`,
      );
    }
  } finally {
    await Promise.all([pico.stop(), uno.stop()]);
  }
}

/** Opens the port (which resets the board) and times the firmware's first REPORT_VERSION. */
async function firstAnswerMs(board: SimulatedBoard): Promise<number> {
  const started = performance.now();
  const port = new SerialPort({ path: board.portPath, baudRate: 57_600 });
  try {
    return await new Promise<number>((resolve, reject) => {
      let received = Buffer.alloc(0);
      const timer = setTimeout(
        () => reject(new Error(`no REPORT_VERSION from ${board.portPath} within ${ANSWER_TIMEOUT_MS} ms`)),
        ANSWER_TIMEOUT_MS,
      );
      port.on('data', (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        if (!received.includes(REPORT_VERSION)) return;
        clearTimeout(timer);
        resolve(performance.now() - started);
      });
      port.on('error', reject);
    });
  } finally {
    await new Promise<void>((resolve) => (port.isOpen ? port.close(() => resolve()) : resolve()));
  }
}

const median = (values: number[]) => percentile(values, 50);
