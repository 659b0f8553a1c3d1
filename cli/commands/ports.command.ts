import type { Command } from 'commander';
import { formatLikelyBoard, formatUsbId, listBoardPorts } from '../../mcu/ports/serial-ports.ts';
import { printJson, printTable } from '../output.ts';

export function register(program: Command): void {
  program
    .command('ports')
    .description(
      'List serial ports and the board each most likely is (from its USB ids), and the simulated boards running',
    )
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      const ports = await listBoardPorts();
      if (options.json) return printJson(ports);
      if (ports.length === 0) {
        process.stdout.write(
          'No serial ports found. Plug a board in, or start a simulated one: boardfleet bench start uno\n',
        );
        return;
      }
      printTable(
        ports.map((port) => ({
          port: port.path,
          'usb id': formatUsbId(port),
          board: formatLikelyBoard(port),
          manufacturer: port.manufacturer ?? '-',
        })),
        ['port', 'usb id', 'board', 'manufacturer'],
      );
    });
}
