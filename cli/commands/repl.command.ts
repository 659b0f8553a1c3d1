import { once } from 'node:events';
import { start as startRepl } from 'node:repl';
import type { Command } from 'commander';
import { type Board, getSerialBoard, type Uf2Board } from '../../boards/board-catalogue.ts';
import { resolvePort } from '../../mcu/flasher/find-port.ts';
import type { FirmataBoard } from '../../mcu/johnny-five/firmata-board.ts';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';
import { reportCliError } from '../cli-errors.ts';

export function register(program: Command): void {
  program
    .command('repl')
    .description("Open johnny-five's REPL on a board running Firmata, with board and five in scope")
    .option('--port <port>', 'serial port, e.g. /dev/ttyACM0, or "auto" to find the board', 'auto')
    .option('--board <board>', 'the board type, e.g. uno: found by --port auto, named in hints')
    .option('--timeout <ms>', 'how long to wait for the Firmata handshake', '10000')
    .addHelpText(
      'after',
      `
Example, on a bench board:
  boardfleet bench start uno
  boardfleet flash firmata --board uno --port ~/.cache/boardfleet/bench/uno/tty
  boardfleet repl --port ~/.cache/boardfleet/bench/uno/tty
  >> new five.Led(13).blink(500)`,
    )
    .action(async (options: { port: string; board?: string; timeout: string }) => {
      const board = options.board ? getSerialBoard(options.board) : undefined;
      const timeoutMs = parseTimeout(options.timeout);
      const onNotice = (line: string) => process.stderr.write(`${line}\n`);
      const portPath = await resolvePort(options.port, board, { onNotice });
      process.stderr.write(`Opening ${board ? `${board.name} on ` : ''}${portPath}…\n`);
      // johnny-five is a few hundred modules: loaded only by this command, not by every CLI start.
      const { openFirmataBoard } = await import('../../mcu/johnny-five/firmata-board.ts');
      const opened = await openFirmataBoard({ portPath, timeoutMs }).catch((error: unknown) => {
        throw withFlashHint(error, board, portPath);
      });
      process.stderr.write(
        `Connected to ${opened.firmware} on ${portPath}. In scope: board, five (johnny-five).\n` +
          `Try: new five.Led(${board?.ledPin ?? 13}).blink(500)    Quit: .exit or Ctrl-D\n`,
      );
      // Components the session started (a blinking Led's interval) would keep Node running.
      process.exit(await runSession(opened));
    });
}

/** Runs the REPL until it is quit (exit code 0) or the board goes away (1); the port is closed either way. */
async function runSession(opened: FirmataBoard): Promise<number> {
  const { default: five } = await import('johnny-five');
  const session = startRepl({ prompt: '>> ', useGlobal: false });
  session.context.board = opened.board;
  session.context.five = five;
  const ended = await Promise.race([
    once(session, 'exit').then(() => 'quit' as const),
    opened.lost.then(() => 'lost' as const),
  ]);
  if (ended === 'quit') {
    await opened.close();
    return 0;
  }
  session.close();
  return reportCliError(
    new BoardfleetError('port-lost', `Lost the board on ${opened.portPath}: the serial port closed`),
  );
}

function withFlashHint(error: unknown, board: Board | Uf2Board | undefined, portPath: string): unknown {
  if (!isBoardfleetError(error) || error.code !== 'firmata-no-answer') return error;
  return new BoardfleetError(
    'firmata-no-answer',
    `${error.message}: is Firmata on it? Flash it with: boardfleet flash firmata --board ${board?.id ?? '<board>'} --port ${portPath}`,
    { cause: error },
  );
}

function parseTimeout(value: string): number {
  const timeoutMs = Number(value);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new BoardfleetError(
      'invalid-option',
      `--timeout must be a positive number of milliseconds, not "${value}"`,
    );
  }
  return timeoutMs;
}
