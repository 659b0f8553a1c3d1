import type { Command } from 'commander';
import { listBoards } from '../../boards/board-catalogue.ts';
import { formatBytes, printJson, printTable } from '../output.ts';

export function register(program: Command): void {
  program
    .command('boards')
    .description('List the board types Boardfleet can build for and flash')
    .option('--json', 'machine-readable output')
    .action((options: { json?: boolean }) => {
      const boards = listBoards();
      if (options.json) return printJson(boards);
      printTable(
        boards.map((board) => ({
          id: board.id,
          name: board.name,
          mcu: board.mcu,
          flash: `${formatBytes(board.applicationFlashSize)} of ${formatBytes(board.flash.size)}`,
          ram: formatBytes(board.ramSize),
          upload: `${board.upload.protocol} @ ${board.upload.baudRate}`,
          reset: board.upload.reset,
        })),
        ['id', 'name', 'mcu', 'flash', 'ram', 'upload', 'reset'],
      );
    });
}
