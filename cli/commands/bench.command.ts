import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { getAnyBoard, isUf2Board, type Uf2Board } from '../../boards/board-catalogue.ts';
import { buildUf2Firmware } from '../../builder/mcu/rp2040/build-uf2-firmware.ts';
import { picoFlashFile } from '../../mcu/simulator/rp2040/pico-launch.ts';
import {
  defaultStateDirectory,
  findRunningBench,
  listRunningBenches,
  startSimulatedBoard,
  stopBench,
} from '../../mcu/simulator/simulated-board.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { printJson, printTable } from '../output.ts';

export function register(program: Command): void {
  const bench = program
    .command('bench')
    .description(
      'Simulated boards ("bench boards"): AVR boards with their real bootloaders in simavr, the Pico in rp2040js, on a serial port a host opens like a USB board',
    )
    .addHelpText(
      'after',
      `
Examples:
  boardfleet bench start uno
  boardfleet flash firmata --board uno --port ~/.cache/boardfleet/bench/uno/tty
  boardfleet probe --port ~/.cache/boardfleet/bench/uno/tty
  boardfleet bench start pico
  boardfleet probe --port ~/.cache/boardfleet/bench/pico/tty
  boardfleet bench list
  boardfleet bench stop uno
  boardfleet bench stop --all`,
    );

  bench
    .command('start <board>')
    .description('Start a simulated board in the background and print its serial port')
    .option('--state-dir <dir>', 'where its flash image, port link and control socket live')
    .option(
      '--firmware <file>',
      'put this in its flash first: a .hex for an AVR board, a .uf2 for the Pico (which otherwise starts with our Firmata)',
    )
    .option('--json', 'machine-readable output')
    .action(async (boardId: string, options: { stateDir?: string; firmware?: string; json?: boolean }) => {
      const board = getAnyBoard(boardId);
      const firmware = isUf2Board(board)
        ? { firmwareUf2: options.firmware ?? (await defaultUf2Firmware(board, options.stateDir)) }
        : { firmwareHex: options.firmware };
      const simulated = await startSimulatedBoard({
        board: boardId,
        stateDir: options.stateDir,
        ...firmware,
        detached: true,
      });
      simulated.disconnect();
      const started = {
        board: simulated.board.id,
        portPath: simulated.portPath,
        pid: simulated.pid,
        stateDir: simulated.stateDir,
      };
      if (options.json) return printJson(started);
      const onOpen = isUf2Board(board)
        ? 'opening the port resets it, as on the bench Uno'
        : 'opening the port resets it into its bootloader, as DTR does';
      process.stdout.write(
        `${started.portPath}\n` +
          `  ${simulated.board.name} (pid ${started.pid}); ${onOpen}.\n` +
          `  Stop it with: boardfleet bench stop --state-dir ${started.stateDir}\n`,
      );
    });

  bench
    .command('stop [board]')
    .description('Stop a simulated board, or every one (its flash is kept for the next start)')
    .option('--state-dir <dir>', 'the state directory it was started with')
    .option('--all', 'stop every simulated board running in the default bench directories')
    .action(async (boardId: string | undefined, options: { stateDir?: string; all?: boolean }) => {
      if (options.all && (boardId || options.stateDir)) {
        throw new BoardfleetError(
          'invalid-option',
          '--all stops every board: name no board and no --state-dir',
        );
      }
      if (options.all) return stopAllBenches();
      if (!boardId && !options.stateDir) {
        throw new BoardfleetError(
          'invalid-option',
          'Name the board ("bench stop uno"), give --state-dir, or stop every one with --all',
        );
      }
      const stateDir = resolve(options.stateDir ?? defaultStateDirectory(boardId!));
      const running = await findRunningBench(stateDir);
      if (!running)
        throw new BoardfleetError('bench-board-not-running', `No simulated board runs in ${stateDir}`);
      await stopBench(running);
      process.stdout.write(`Stopped ${running.board ?? 'the board'} (pid ${running.pid}) in ${stateDir}\n`);
    });

  bench
    .command('list')
    .description('List simulated boards running in the default bench directories')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      const running = await listRunningBenches();
      if (options.json) return printJson(running);
      printTable(
        running.map((entry) => ({
          board: entry.board ?? '?',
          port: entry.portPath,
          pid: String(entry.pid),
          'state dir': entry.stateDir,
        })),
        ['board', 'port', 'pid', 'state dir'],
      );
    });
}

/**
 * A bench Pico with nothing in its flash yet starts with our Firmata, built for it into its state
 * directory, so `bench start pico` then `probe` works out of the box; later starts keep its flash.
 */
async function defaultUf2Firmware(
  board: Uf2Board,
  stateDir: string | undefined,
): Promise<string | undefined> {
  const directory = resolve(stateDir ?? defaultStateDirectory(board.id));
  if (existsSync(picoFlashFile(board, directory))) return undefined;
  process.stderr.write(`Building firmata for ${board.id}, the bench ${board.name}'s first firmware…\n`);
  const built = await buildUf2Firmware({
    recipe: 'firmata',
    board: board.id,
    outDir: join(directory, 'firmware'),
  });
  return built.uf2Path;
}

/** `bench stop --all`: every board at once, a line for each as it stops. */
async function stopAllBenches(): Promise<void> {
  const running = await listRunningBenches();
  if (running.length === 0) {
    process.stdout.write('No simulated boards running\n');
    return;
  }
  await Promise.all(
    running.map(async (entry) => {
      await stopBench(entry);
      process.stdout.write(`Stopped ${entry.board ?? 'the board'} (pid ${entry.pid}) in ${entry.stateDir}\n`);
    }),
  );
}
