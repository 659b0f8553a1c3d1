import { extname } from 'node:path';
import type { Command } from 'commander';
import { type Board, getBoard, getSerialBoard, isUf2Board } from '../../boards/board-catalogue.ts';
import { buildFirmware } from '../../builder/builder.ts';
import { resolvePort } from '../../mcu/flasher/find-port.ts';
import { type FlashPhase, flashBoard } from '../../mcu/flasher/flash-board.ts';
import { flashStation, type StationOutcome, stationPorts } from '../../mcu/flasher/flash-station.ts';
import { loadHexFile } from '../../mcu/flasher/intel-hex.ts';
import { listBoardPorts } from '../../mcu/ports/serial-ports.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { formatBytes, printJson } from '../output.ts';
import { progressBar, progressBars } from '../progress.ts';
import { flashUf2Board } from './flash-uf2.ts';

const PHASE_LABELS: Record<Exclude<FlashPhase, 'sync'>, string> = { write: 'Writing', verify: 'Verifying' };

export function register(program: Command): void {
  program
    .command('flash <target>')
    .description(
      'Flash a .hex or .uf2 file, or a firmware recipe (e.g. "firmata") built first, onto a board over USB',
    )
    .requiredOption('--board <board>', 'board type, e.g. uno (see "boardfleet boards")')
    .option('--port <port>', 'serial port, or "auto" to find the board by its USB id', 'auto')
    .option(
      '--drive <dir>',
      "a UF2 board's mounted BOOTSEL drive (RPI-RP2 for a Pico), when the search does not find it",
    )
    .option(
      '--all',
      'flash every port that can be this board (by USB id, and bench boards started as it) at once',
    )
    .option('--json', 'machine-readable output')
    .action(async (target: string, options: FlashCommandOptions, command: Command) => {
      const say = (line: string) => {
        if (!options.json) process.stderr.write(`${line}\n`);
      };
      const board = getSerialBoard(options.board);
      if (isUf2Board(board)) {
        if (options.all) {
          throw new BoardfleetError(
            'invalid-option',
            `--all is for boards flashed over serial: ${board.name} is flashed through its BOOTSEL drive, one at a time`,
          );
        }
        return flashUf2Board(target, board, options, say);
      }
      if (options.drive !== undefined) {
        throw new BoardfleetError(
          'invalid-option',
          `--drive is for boards flashed through a UF2 drive; ${options.board} is flashed over its serial port`,
        );
      }
      if (options.all) {
        if (command.getOptionValueSource('port') === 'cli') {
          throw new BoardfleetError(
            'invalid-option',
            `--all flashes every port that can be ${board.id}; leave out --port`,
          );
        }
        return flashAll(target, board, options, say);
      }
      // Find the board before a build that may take a while.
      const portPath = await resolvePort(options.port, board, { onNotice: say });
      const hexPath = await firmwareHexPath(target, board, say);

      let bar: ReturnType<typeof progressBar> | undefined;
      let barPhase: FlashPhase | undefined;
      const controller = new AbortController();
      const abort = () => controller.abort();
      process.once('SIGINT', abort);
      try {
        const result = await flashBoard({
          hexPath,
          board,
          portPath,
          signal: controller.signal,
          onProgress: ({ phase, done, total }) => {
            if (options.json) return;
            if (phase === 'sync') {
              if (done === 0)
                say(`Resetting ${board.name} on ${portPath} into its bootloader (${board.upload.protocol})…`);
              return;
            }
            if (phase !== barPhase) {
              bar?.stop();
              bar = progressBar(PHASE_LABELS[phase], total);
              barPhase = phase;
            }
            bar?.update(done);
          },
        });
        bar?.stop();
        bar = undefined;
        if (options.json) return printJson(result);
        if (result.bootloaderFallback) say(result.bootloaderFallback);
        process.stdout.write(
          `Flashed ${formatBytes(result.bytesWritten)} to ${getBoard(result.board).name} on ${result.portPath} in ` +
            `${(result.durationMs / 1000).toFixed(1)} s (${formatBytes(result.bytesPerSecond)}/s), verified\n`,
        );
      } finally {
        process.off('SIGINT', abort);
        bar?.stop();
      }
    });
}

interface FlashCommandOptions {
  board: string;
  port: string;
  drive?: string;
  all?: boolean;
  json?: boolean;
}

/** A .hex file as it is, or a recipe built for the board first. */
async function firmwareHexPath(target: string, board: Board, say: (line: string) => void): Promise<string> {
  if (extname(target).toLowerCase() === '.hex') return target;
  say(`Building ${target} for ${board.id}…`);
  return (await buildFirmware({ recipe: target, board: board.id, onStep: (step) => say(`  ${step}…`) }))
    .hexPath;
}

/** `flash --all`: one build, then every matching port at once, a bar and a report line each. */
async function flashAll(
  target: string,
  board: Board,
  options: FlashCommandOptions,
  say: (line: string) => void,
): Promise<void> {
  const ports = stationPorts(await listBoardPorts(), board);
  const hexPath = await firmwareHexPath(target, board, say);
  // Read once, so a bad file fails before any port is touched.
  const image = await loadHexFile(hexPath, board);
  say(`Flashing ${board.name} on ${ports.length} port${ports.length === 1 ? '' : 's'}: ${ports.join(', ')}`);

  const bars = options.json ? undefined : progressBars();
  const controller = new AbortController();
  const abort = () => controller.abort();
  process.once('SIGINT', abort);
  let outcomes: StationOutcome[];
  try {
    outcomes = await flashStation({
      ports,
      board,
      signal: controller.signal,
      flash: async (port, signal) => {
        let bar: ReturnType<NonNullable<typeof bars>['add']> | undefined;
        try {
          return await flashBoard({
            board,
            portPath: port,
            image,
            hexPath,
            signal,
            onProgress: ({ phase, done, total }) => {
              if (!bars || phase === 'sync') return;
              bar ??= bars.add(port, total);
              bar.update(done, PHASE_LABELS[phase]);
            },
          });
        } finally {
          bar?.stop();
        }
      },
    });
  } finally {
    process.off('SIGINT', abort);
    bars?.stop();
  }
  if (outcomes.some((outcome) => !outcome.verified)) process.exitCode = 1;
  if (options.json) return printJson(outcomes);
  for (const outcome of outcomes) {
    process.stdout.write(
      outcome.verified
        ? `✓ ${outcome.port} ${outcome.board} ${formatBytes(outcome.bytes)} in ${outcome.seconds.toFixed(1)} s, verified\n`
        : `✗ ${outcome.port} ${outcome.board}: ${outcome.error}\n`,
    );
  }
}
