import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import type { Command } from 'commander';
import { type BuildInput, buildFirmware, buildUf2Firmware, formatSizeReport } from '../../builder/builder.ts';
import type { UsedLibrary } from '../../builder/mcu/build-firmware.ts';
import { getAnyBoard, isUf2Board, type Uf2Board } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { BuildJob, BuildList } from '../../protocol/api/builds.ts';
import { ApiClient } from '../api-client.ts';
import { formatBytes, printJson, printTable } from '../output.ts';
import { progressBar } from '../progress.ts';

export function register(program: Command): void {
  registerBuilds(program);
  program
    .command('build <target>')
    .description(
      'Build a firmware recipe (e.g. "firmata") or an Arduino sketch (.ino or its folder) into .hex and .elf; ' +
        'for a UF2 board (pico), a firmware recipe into .uf2 and .elf; ' +
        'for a Linux board (e.g. rpi-4b), build an image recipe (e.g. pi-minimal) on the server; ' +
        'for a virtual machine (vm-x86_64, vm-arm64), a unikernel recipe (e.g. http-hello)',
    )
    .requiredOption('--board <board>', 'board to build for, e.g. uno')
    .option('--out <dir>', 'output directory (default: build/<name>/<board>)')
    .option(
      '--library <dir>',
      'sketches: an Arduino library folder, or a folder of them, searched after ~/Arduino/libraries (repeatable; later wins)',
      (dir: string, dirs: string[]) => [...dirs, dir],
      [] as string[],
    )
    .option('--json', 'machine-readable output')
    .option('--no-follow', 'images: queue the build on the server and return at once')
    .action(
      async (
        target: string,
        options: { board: string; out?: string; library: string[]; json?: boolean; follow: boolean },
      ) => {
        const board = getAnyBoard(options.board);
        if (isUf2Board(board)) return buildForUf2Board(target, board, options);
        if (board.family !== 'mcu') {
          return buildImageOnServer(target, options.board, options);
        }
        const input: BuildInput = (await isSketch(target)) ? { sketchPath: target } : { recipe: target };
        const result = await buildFirmware({
          ...input,
          board: options.board,
          ...(options.out ? { outDir: options.out } : {}),
          libraryDirs: options.library,
          onStep: options.json ? undefined : (step) => process.stderr.write(`  ${step}…\n`),
        });
        if (options.json) return printJson(result);
        if (result.warnings) process.stderr.write(`${result.warnings}\n`);
        process.stdout.write(
          `Built ${result.name} for ${result.board} in ${(result.durationMs / 1000).toFixed(1)} s, into ${result.outDir}\n` +
            `  hex:  ${result.hexPath}\n` +
            `  elf:  ${result.elfPath}\n` +
            `  sha256 (hex): ${result.hexSha256}\n` +
            `  size: ${formatSizeReport(result.size)}\n` +
            result.libraries.map((library) => `  ${formatLibraryUse(library)}\n`).join(''),
        );
      },
    );
}

/** A recipe built here with arm-none-eabi-gcc into .uf2 and .elf; sketches are AVR only. */
async function buildForUf2Board(
  target: string,
  board: Uf2Board,
  options: { out?: string; json?: boolean },
): Promise<void> {
  if (await isSketch(target)) {
    throw new BoardfleetError(
      'board-unsupported',
      `Arduino sketches build for AVR boards only; board ${board.id} (${board.name}) builds firmware recipes, e.g. boardfleet build firmata --board ${board.id}`,
    );
  }
  const result = await buildUf2Firmware({
    recipe: target,
    board: board.id,
    ...(options.out ? { outDir: options.out } : {}),
    onStep: options.json ? undefined : (step) => process.stderr.write(`  ${step}…\n`),
  });
  if (options.json) return printJson(result);
  if (result.warnings) process.stderr.write(`${result.warnings}\n`);
  process.stdout.write(
    `Built ${result.name} for ${result.board} in ${(result.durationMs / 1000).toFixed(1)} s, into ${result.outDir}\n` +
      `  uf2:  ${result.uf2Path}\n` +
      `  elf:  ${result.elfPath}\n` +
      `  sha256 (uf2): ${result.uf2Sha256}\n` +
      `  size: ${formatSizeReport(result.size)}\n`,
  );
}

/** "Using library Wire 1.0 (core)"; a library from elsewhere names its folder. */
function formatLibraryUse(library: UsedLibrary): string {
  const version = library.version ? ` ${library.version}` : '';
  const where = library.location === 'core' ? 'core' : library.folder;
  return `Using library ${library.name}${version} (${where})`;
}

/** A .ino file or a folder holding one is a sketch; anything else names a recipe. */
async function isSketch(target: string): Promise<boolean> {
  if (extname(target) === '.ino') return true;
  try {
    return (await stat(target)).isDirectory() && !(await stat(`${target}/recipe.yaml`).catch(() => null));
  } catch {
    return false;
  }
}

const ENDED = ['succeeded', 'failed', 'cancelled'];

/** Queues an image build on the server, then follows its live log and progress until it ends. */
async function buildImageOnServer(
  recipe: string,
  board: string,
  options: { json?: boolean; follow: boolean },
): Promise<void> {
  const api = ApiClient.fromEnvironment();
  const job = await api.request<BuildJob>('POST', '/api/v1/builds', { recipe, board });
  if (!options.follow) {
    if (options.json) return printJson(job);
    process.stdout.write(
      `Queued build ${job.id}. Follow it with: boardfleet builds log ${job.id} --follow\n`,
    );
    return;
  }
  const ended = await followBuild(api, job.id, { quiet: Boolean(options.json) });
  if (options.json) return printJson(ended);
  printBuildResult(ended);
}

/** Streams a build's log to stderr with a progress bar; resolves with the build as it ended. */
export async function followBuild(
  api: ApiClient,
  id: string,
  options: { quiet: boolean },
): Promise<BuildJob> {
  const bar = options.quiet ? null : progressBar(`build ${id}`, 100, 'items');
  let last: BuildJob | null = null;
  for await (const { event, data } of api.events(`/api/v1/builds/${encodeURIComponent(id)}/events`)) {
    if (event === 'log' && !options.quiet && !process.stderr.isTTY) process.stderr.write(`${String(data)}\n`);
    if (event === 'status') {
      last = data as BuildJob;
      bar?.update(last.progress);
    }
  }
  bar?.stop();
  last = await api.request<BuildJob>('GET', `/api/v1/builds/${encodeURIComponent(id)}`);
  if (!ENDED.includes(last.state)) throw new Error(`build ${id} stream ended while ${last.state}`);
  return last;
}

function printBuildResult(job: BuildJob): void {
  if (job.state !== 'succeeded') {
    process.stderr.write(`Build ${job.id} ${job.state}${job.error ? `: ${job.error}` : ''}\n`);
    process.exitCode = 1;
    return;
  }
  process.stdout.write(`Built ${job.recipe} for ${job.board} (build ${job.id}):\n`);
  printTable(
    job.outputs.map((output) => ({
      role: output.role,
      artifact: output.artifactId,
      name: output.name,
      version: output.version,
      size: formatBytes(output.size),
    })),
    ['role', 'artifact', 'name', 'version', 'size'],
  );
}

/** `boardfleet builds`: list, log (--follow), cancel. */
export function registerBuilds(program: Command): void {
  const builds = program
    .command('builds')
    .description('Image build jobs on the server')
    .addHelpText(
      'after',
      `
Examples:
  boardfleet builds list
  boardfleet builds log bld-… --follow
  boardfleet builds cancel bld-…
Start one with: boardfleet build pi-minimal --board rpi-4b --no-follow (see boardfleet build --help)`,
    );
  builds
    .command('list', { isDefault: true })
    .description('Build jobs, newest first')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      const { builds: jobs } = await ApiClient.fromEnvironment().request<BuildList>('GET', '/api/v1/builds');
      if (options.json) return printJson(jobs);
      printTable(
        jobs.map((job) => ({
          id: job.id,
          recipe: job.recipe,
          board: job.board,
          state: job.state,
          progress: `${job.progress}%`,
          step: job.error ?? job.step ?? '',
        })),
        ['id', 'recipe', 'board', 'state', 'progress', 'step'],
      );
    });
  builds
    .command('log <id>')
    .description('The build log; --follow streams it live until the build ends')
    .option('--follow', 'follow the live log')
    .action(async (id: string, options: { follow?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      if (options.follow) {
        for await (const { event, data } of api.events(`/api/v1/builds/${encodeURIComponent(id)}/events`)) {
          if (event === 'log') process.stdout.write(`${String(data)}\n`);
        }
        return;
      }
      const response = await api.fetch(`${api.baseUrl}/api/v1/builds/${encodeURIComponent(id)}/log`, {
        headers: { authorization: `Bearer ${api.token}` },
      });
      process.stdout.write(await response.text());
    });
  builds
    .command('cancel <id>')
    .description('Cancel a queued or running build')
    .action(async (id: string) => {
      const job = await ApiClient.fromEnvironment().request<BuildJob>(
        'POST',
        `/api/v1/builds/${encodeURIComponent(id)}/cancel`,
      );
      process.stdout.write(`Build ${job.id}: ${job.state}\n`);
    });
}
