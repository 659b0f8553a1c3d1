// `npm run bench -- arduino-libraries [--runs 3]`: sketches using Arduino libraries (the core's
// Wire, SPI, EEPROM, SoftwareSerial and HID; libraries from a libraries folder) built by
// buildFirmware and, in the same run, by Debian's arduino-builder (the baseline): success, flash
// bytes, wall time. Cold: an empty cache and build folder; warm: the cache of the cold build and
// a fresh build folder (arduino-builder: its -build-cache of core.a). Times are medians of --runs.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { buildFirmware } from '../builder/mcu/build-firmware.ts';
import { locateHostTool } from '../lib/host-tools.ts';
import { BenchUsageError } from './bench-args.ts';

const execFileAsync = promisify(execFile);
const FIXTURES = new URL('../builder/mcu/fixtures/', import.meta.url).pathname;
const LIBRARY_FOLDERS = join(FIXTURES, 'library-folders');

interface Case {
  sketch: string;
  board: string;
  /** Folders of libraries: our --library, arduino-builder's -libraries. */
  libraryFolders: string[];
}

const CASES: Case[] = [
  { sketch: join(FIXTURES, 'blink'), board: 'uno', libraryFolders: [] },
  ...['uses-wire', 'uses-spi', 'uses-eeprom', 'uses-software-serial', 'uses-hid'].map((name) => ({
    sketch: join(FIXTURES, 'library-sketches', name),
    board: 'uno',
    libraryFolders: [],
  })),
  { sketch: join(FIXTURES, 'library-sketches', 'uses-hid'), board: 'leonardo', libraryFolders: [] },
  {
    sketch: join(FIXTURES, 'library-sketches', 'uses-home-library'),
    board: 'uno',
    libraryFolders: [join(LIBRARY_FOLDERS, 'home')],
  },
  {
    sketch: join(FIXTURES, 'library-sketches', 'uses-option-library'),
    board: 'uno',
    libraryFolders: [join(LIBRARY_FOLDERS, 'option')],
  },
  // Bad input: we refuse both in one line; arduino-builder warns and builds with the SAMD library,
  // and for Led.h picks one of the two and fails to link.
  {
    sketch: join(FIXTURES, 'library-sketches', 'uses-samd-library'),
    board: 'uno',
    libraryFolders: [join(LIBRARY_FOLDERS, 'samd-only')],
  },
  {
    sketch: join(FIXTURES, 'library-sketches', 'uses-ambiguous-header'),
    board: 'uno',
    libraryFolders: [join(LIBRARY_FOLDERS, 'ambiguous')],
  },
];

interface Outcome {
  ok: boolean;
  flashBytes: number | null;
  seconds: number;
  error?: string;
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { runs: { type: 'string', default: '3' } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new BenchUsageError('--runs takes a whole number ≥ 1');
  const arduinoBuilder = locateHostTool('arduino-builder', process.env.PATH ?? '');
  if (!arduinoBuilder) {
    throw new BenchUsageError(
      'arduino-builder is not installed. Install it with: sudo apt-get install arduino-builder',
    );
  }
  const work = mkdtempSync(join(tmpdir(), 'arduino-libraries-bench-'));
  process.stdout.write(
    `arduino-libraries benchmark: ${CASES.length} sketches, boardfleet vs ${arduinoBuilder} (baseline), median of ${runs}\n\n`,
  );
  const header = [
    'sketch',
    'board',
    'ours',
    'bytes',
    'cold s',
    'warm s',
    'arduino-builder',
    'bytes',
    'cold s',
    'warm s',
  ];
  const widths = [24, 10, 6, 7, 8, 8, 17, 7, 8, 8];
  const row = (cells: string[]) =>
    cells.map((cell, index) => cell.padEnd(widths[index] ?? 8)).join('') + '\n';
  process.stdout.write(row(header));
  const failures: string[] = [];
  try {
    for (const [index, testCase] of CASES.entries()) {
      const caseDir = join(work, String(index));
      const ours = await measure(runs, caseDir, 'ours', (dir, cache) => buildOurs(testCase, dir, cache));
      const baseline = await measure(runs, caseDir, 'arduino-builder', (dir, cache) =>
        buildWithArduinoBuilder(arduinoBuilder, testCase, dir, cache),
      );
      const name = testCase.sketch.split('/').at(-1) as string;
      for (const [who, outcome] of [
        ['ours', ours.cold],
        ['arduino-builder', baseline.cold],
      ] as const) {
        if (!outcome.ok) failures.push(`${name} (${testCase.board}), ${who}: ${outcome.error}`);
      }
      process.stdout.write(
        row([
          name,
          testCase.board,
          ours.cold.ok ? 'ok' : 'FAIL',
          String(ours.cold.flashBytes ?? '-'),
          ours.cold.seconds.toFixed(2),
          ours.warm.toFixed(2),
          baseline.cold.ok ? 'ok' : 'FAIL',
          String(baseline.cold.flashBytes ?? '-'),
          baseline.cold.seconds.toFixed(2),
          baseline.warm.toFixed(2),
        ]),
      );
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(
    "\nBoth compile with Debian's avr-gcc 5.4 and arduino-core-avr 1.8.7 (arduino-builder with -DDECIMAL_DIG=__DECIMAL_DIG__,\n" +
      'which that core needs with that compiler). Cold includes compiling the core; warm reuses the cached core (and, ours, libraries).\n',
  );
  if (failures.length > 0) process.stdout.write('\nRefused or failed (first line of each):\n');
  for (const failure of failures) process.stdout.write(`  ${failure.split('\n')[0]}\n`);
}

/** One cold build and `runs` warm ones (each into a fresh folder, sharing the cold build's cache). */
async function measure(
  runs: number,
  caseDir: string,
  who: string,
  build: (outDir: string, cacheDir: string) => Promise<number | null>,
): Promise<{ cold: Outcome; warm: number }> {
  const cacheDir = join(caseDir, `${who}-cache`);
  mkdirSync(cacheDir, { recursive: true });
  const timed = async (outDir: string): Promise<Outcome> => {
    const started = performance.now();
    try {
      const flashBytes = await build(outDir, cacheDir);
      return { ok: true, flashBytes, seconds: (performance.now() - started) / 1000 };
    } catch (error) {
      return {
        ok: false,
        flashBytes: null,
        seconds: (performance.now() - started) / 1000,
        error: failureLine(error),
      };
    }
  };
  const cold = await timed(join(caseDir, `${who}-cold`));
  const warm: number[] = [];
  for (let run = 0; run < runs; run++) warm.push((await timed(join(caseDir, `${who}-warm-${run}`))).seconds);
  warm.sort((a, b) => a - b);
  return { cold, warm: warm[Math.floor(warm.length / 2)] as number };
}

/** Our errors are one line; of arduino-builder's stderr, its first error line (or its last line). */
function failureLine(error: unknown): string {
  const stderr = (error as { stderr?: string }).stderr?.trim();
  if (stderr) {
    const lines = stderr.split('\n');
    return lines.find((line) => /error/i.test(line)) ?? lines.at(-1) ?? stderr;
  }
  return error instanceof Error ? error.message : String(error);
}

async function buildOurs(testCase: Case, outDir: string, cacheDir: string): Promise<number> {
  const result = await buildFirmware({
    sketchPath: testCase.sketch,
    board: testCase.board,
    outDir,
    cacheDir,
    // Not the machine's own ~/Arduino/libraries: arduino-builder is not shown it either.
    userLibrariesDir: join(cacheDir, 'no-user-libraries'),
    libraryDirs: testCase.libraryFolders,
  });
  return result.size.flashBytes;
}

async function buildWithArduinoBuilder(
  executable: string,
  testCase: Case,
  buildPath: string,
  cacheDir: string,
): Promise<number> {
  mkdirSync(buildPath, { recursive: true });
  const name = testCase.sketch.split('/').at(-1) as string;
  const { stdout } = await execFileAsync(executable, [
    '-compile',
    '-hardware',
    '/usr/share/arduino/hardware',
    // Debian's arduino-builder keeps its ctags recipe in its own platform.txt, read as hardware and tools.
    '-hardware',
    '/usr/share/arduino-builder',
    '-tools',
    '/usr/share/arduino-builder',
    '-fqbn',
    `arduino:avr:${testCase.board}`,
    '-core-api-version',
    '10807',
    '-prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=__DECIMAL_DIG__',
    ...testCase.libraryFolders.flatMap((folder) => ['-libraries', folder]),
    '-build-path',
    buildPath,
    '-build-cache',
    cacheDir,
    join(testCase.sketch, `${name}.ino`),
  ]);
  const used = /Sketch uses (\d+) bytes/.exec(stdout);
  if (!used) throw new Error(`arduino-builder printed no size:\n${stdout}`);
  return Number(used[1]);
}
