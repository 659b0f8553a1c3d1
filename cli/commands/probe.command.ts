import type { Command } from 'commander';
import { getSerialBoard } from '../../boards/board-catalogue.ts';
import { ledPinOfPort, resolvePort } from '../../mcu/flasher/find-port.ts';
import { probeBoard } from '../../mcu/probe/probe-board.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { printJson } from '../output.ts';

/** Where Arduino boards have their LED, for a port whose board is not known. */
const ARDUINO_LED_PIN = 13;

interface ProbeFlags {
  port: string;
  board?: string;
  timeout: string;
  ledPin?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('probe')
    .description(
      'Check that a board on a serial port runs Firmata and works (firmware, pins, latency, LED self-test)',
    )
    .option('--port <path>', 'serial port, e.g. /dev/ttyACM0, or "auto" to find the board', 'auto')
    .option('--board <board>', 'the board type: with --port auto, the one to look for, e.g. uno or pico')
    .option('--timeout <ms>', 'how long to wait for the Firmata handshake', '10000')
    .option(
      '--led-pin <pin>',
      "pin the self-test toggles (default: the board's LED, 13 on the Uno, 25 on the Pico)",
    )
    .option('--json', 'machine-readable output')
    .action(async (options: ProbeFlags) => {
      const board = options.board ? getSerialBoard(options.board) : undefined;
      const onNotice = (line: string) => process.stderr.write(`${line}\n`);
      const portPath = await resolvePort(options.port, board, { onNotice });
      const ledPin =
        options.ledPin !== undefined
          ? parsePositiveInteger(options.ledPin, '--led-pin')
          : (board?.ledPin ?? (await ledPinOfPort(portPath)) ?? ARDUINO_LED_PIN);
      const result = await probeBoard({
        portPath,
        timeoutMs: parsePositiveInteger(options.timeout, '--timeout'),
        ledPin,
      });
      const healthy = result.status === 'firmata' && result.selfTest.passed;
      if (!healthy) process.exitCode = 1;
      if (options.json) return printJson(result);
      if (result.status === 'not-firmata') {
        process.stdout.write(`Not Firmata: ${result.reason}\n`);
        return;
      }
      const modes = Object.entries(result.capabilities)
        .map(([mode, pins]) => `${mode} ${pins.length}`)
        .join(', ');
      const steps = result.selfTest.steps
        .map((step) => `wrote ${step.wrote} read ${step.readBack ?? 'nothing'}`)
        .join(', ');
      process.stdout.write(
        `Firmata board on ${result.portPath}\n` +
          `  firmware:  ${result.firmware.name} ${result.firmware.version} (protocol ${result.protocolVersion}), ready after ${result.readyMs} ms\n` +
          `  pins:      ${result.pinCount} (${result.analogPinCount} analog); ${modes}\n` +
          `  latency:   ${result.latencyMs.median} ms median (min ${result.latencyMs.min}, max ${result.latencyMs.max})\n` +
          `  self-test: ${result.selfTest.passed ? 'passed' : 'FAILED'} on pin ${result.selfTest.pin} (${steps})\n`,
      );
    });
}

function parsePositiveInteger(value: string, option: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0) {
    throw new BoardfleetError('invalid-option', `${option} must be a whole number, not "${value}"`);
  }
  return number;
}
