import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Board } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

const VARIANTS_DIRECTORY = '/usr/share/arduino/hardware/arduino/avr/variants';

/** An MCU port pin (`B5`) and, for an analog input, its ADC channel. */
export interface McuPin {
  port: string;
  bit: number;
  adcChannel?: number;
}

/**
 * Arduino pin names (`D13`, `13`, `A0`) or port pins (`PB5`) to the MCU's port and bit, read from
 * the board's variant in Debian's Arduino core (the same tables `digitalWrite` uses), so the
 * simulated pins are named exactly as a sketch names them.
 */
export class PinMap {
  private constructor(
    private readonly digital: Array<{ port: string; bit: number }>,
    private readonly firstAnalogPin: number,
  ) {}

  static forBoard(board: Board): PinMap {
    const source = readVariant(join(VARIANTS_DIRECTORY, board.arduinoCore.variant, 'pins_arduino.h'));
    const ports = arrayEntries(source, 'digital_pin_to_port_PGM').map(
      (entry) => /^P([A-L])$/.exec(entry)?.[1],
    );
    const bits = arrayEntries(source, 'digital_pin_to_bit_mask_PGM').map(
      (entry) => /^_BV\(\s*(\d)\s*\)$/.exec(entry)?.[1],
    );
    const firstAnalog = /#define\s+PIN_A0\s+\((\d+)\)/.exec(source)?.[1];
    if (ports.length === 0 || ports.length !== bits.length || ports.some((port) => !port) || !firstAnalog) {
      throw new BoardfleetError(
        'board-invalid',
        `Cannot read the pin tables of the ${board.arduinoCore.variant} variant`,
      );
    }
    return new PinMap(
      ports.map((port, pin) => ({ port: port!, bit: Number(bits[pin]) })),
      Number(firstAnalog),
    );
  }

  resolve(name: string): McuPin {
    const portPin = /^P([A-L])([0-7])$/.exec(name);
    if (portPin) return { port: portPin[1]!, bit: Number(portPin[2]) };
    const analog = /^A(\d+)$/.exec(name);
    const digital = /^D?(\d+)$/.exec(name);
    const pin = analog ? this.firstAnalogPin + Number(analog[1]) : digital ? Number(digital[1]) : -1;
    const mcuPin = this.digital[pin];
    if (!mcuPin) {
      throw new BoardfleetError(
        'pin-unknown',
        `No pin "${name}" on this board: use D0…D${this.digital.length - 1}, A0…A${this.digital.length - 1 - this.firstAnalogPin}, or a port pin such as PB5`,
      );
    }
    return analog ? { ...mcuPin, adcChannel: Number(analog[1]) } : mcuPin;
  }
}

/** A variant's header, with the standard one it includes (eightanaloginputs) and no comments. */
function readVariant(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new BoardfleetError(
      'toolchain-missing',
      `${path} is missing. Install it with: sudo apt-get install arduino-core-avr`,
    );
  }
  const included = /#include\s+"([^"]+pins_arduino\.h)"/.exec(text)?.[1];
  const own = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  return included ? `${own}\n${readVariant(join(dirname(path), included))}` : own;
}

function arrayEntries(source: string, name: string): string[] {
  const body = new RegExp(`${name}\\[\\]\\s*=\\s*\\{([^}]*)\\}`).exec(source)?.[1];
  return body
    ? body
        .split(',')
        .map((entry) => entry.trim())
        .filter(Boolean)
    : [];
}
