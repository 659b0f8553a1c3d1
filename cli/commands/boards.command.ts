import type { Command } from 'commander';
import { listBoards, listLinuxBoards, listUf2Boards, listVmBoards } from '../../boards/board-catalogue.ts';
import { formatBytes, printJson, printTable } from '../output.ts';

export function register(program: Command): void {
  program
    .command('boards')
    .description('List the board types Boardfleet can build for and flash')
    .option('--json', 'machine-readable output')
    .action((options: { json?: boolean }) => {
      const boards = listBoards();
      const linuxBoards = listLinuxBoards();
      const vmBoards = listVmBoards();
      const uf2Boards = listUf2Boards();
      if (options.json) return printJson([...boards, ...uf2Boards, ...linuxBoards, ...vmBoards]);
      process.stdout.write('Microcontroller boards (boardfleet build SKETCH|firmata, boardfleet flash):\n');
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
      process.stdout.write(
        '\nMicrocontroller boards flashed through a UF2 drive (boardfleet build firmata, boardfleet flash):\n',
      );
      printTable(
        uf2Boards.map((board) => ({
          id: board.id,
          name: board.name,
          mcu: board.mcu,
          flash: formatBytes(board.flash.size),
          ram: formatBytes(board.ramSize),
          upload: `UF2 drive ${board.uf2.volumeLabel}`,
        })),
        ['id', 'name', 'mcu', 'flash', 'ram', 'upload'],
      );
      process.stdout.write('\nLinux boards (boardfleet build RECIPE, e.g. pi-minimal):\n');
      printTable(
        linuxBoards.map((board) => ({
          id: board.id,
          name: board.name,
          arch: board.architecture,
          kernel: board.kernel.package,
          firmware: board.firmware?.package ?? '-',
          console: board.console.device,
          root: `${board.partitions.a}, ${board.partitions.b}`,
        })),
        ['id', 'name', 'arch', 'kernel', 'firmware', 'console', 'root'],
      );
      process.stdout.write(
        '\nVirtual machines (boardfleet build UNIKERNEL-RECIPE, e.g. http-hello; boardfleet run-image):\n',
      );
      printTable(
        vmBoards.map((board) => ({
          id: board.id,
          name: board.name,
          arch: board.architecture,
          kernel: board.kernel.package,
          console: board.console.device,
          hosts: board.hostBoards.join(', '),
        })),
        ['id', 'name', 'arch', 'kernel', 'console', 'hosts'],
      );
    });
}
