import { extname } from 'node:path';
import type { Command } from 'commander';
import { getBoard } from '../../boards/board-catalogue.ts';
import { buildFirmware } from '../../builder/builder.ts';
import { findBoardPort } from '../../mcu/flasher/find-port.ts';
import { type FlashPhase, flashBoard } from '../../mcu/flasher/flash-board.ts';
import { formatBytes, printJson } from '../output.ts';
import { progressBar } from '../progress.ts';

const PHASE_LABELS: Record<Exclude<FlashPhase, 'sync'>, string> = { write: 'Writing', verify: 'Verifying' };

export function register(program: Command): void {
  program
    .command('flash <target>')
    .description(
      'Flash a .hex file, or a firmware recipe (e.g. "firmata") built first, onto a board over USB',
    )
    .requiredOption('--board <board>', 'board type, e.g. uno (see "boardfleet boards")')
    .option('--port <port>', 'serial port, or "auto" to find the board by its USB id', 'auto')
    .option('--json', 'machine-readable output')
    .action(async (target: string, options: { board: string; port: string; json?: boolean }) => {
      const board = getBoard(options.board);
      const say = (line: string) => {
        if (!options.json) process.stderr.write(`${line}\n`);
      };
      // Find the board before a build that may take a while.
      const portPath = options.port === 'auto' ? await findBoardPort(board) : options.port;
      let hexPath = target;
      if (extname(target).toLowerCase() !== '.hex') {
        say(`Building ${target} for ${board.id}…`);
        hexPath = (
          await buildFirmware({ recipe: target, board: board.id, onStep: (step) => say(`  ${step}…`) })
        ).hexPath;
      }

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
        process.stdout.write(
          `Flashed ${formatBytes(result.bytesWritten)} to ${board.name} on ${result.portPath} in ` +
            `${(result.durationMs / 1000).toFixed(1)} s (${formatBytes(result.bytesPerSecond)}/s), verified\n`,
        );
      } finally {
        process.off('SIGINT', abort);
        bar?.stop();
      }
    });
}
