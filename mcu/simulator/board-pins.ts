import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Board } from '../../boards/board-catalogue.ts';
import { missingPackage } from '../../lib/host-tools.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

const VARIANTS_DIRECTORY = '/usr/share/arduino/hardware/arduino/avr/variants';

/** A board's Arduino pin numbering, read from the Arduino core's own pins_arduino.h. */
export interface BoardPins {
  /** `B5` for the Uno's D13: the port letter and bit the simulator drives and watches. */
  portPin(name: string): string;
  /** The ADC channel of an analog input (`A0` → 0). */
  adcChannel(name: string): number;
}

export function boardPins(board: Board, variantsDirectory = VARIANTS_DIRECTORY): BoardPins {
  const header = readVariantHeader(join(variantsDirectory, board.arduinoCore.variant, 'pins_arduino.h'));
  const ports = arrayEntries(header, 'digital_pin_to_port_PGM').map((entry) => /^P([A-L])$/.exec(entry)?.[1]);
  const bits = arrayEntries(header, 'digital_pin_to_bit_mask_PGM').map((entry) => {
    const bit = /^_BV\(\s*(\d)\s*\)$/.exec(entry)?.[1];
    return bit === undefined ? undefined : Number(bit);
  });
  const firstAnalog = Number(/#define\s+PIN_A0\s+\(?(\d+)\)?/.exec(header)?.[1] ?? NaN);
  const analogCount = Number(/#define\s+NUM_ANALOG_INPUTS\s+(\d+)/.exec(header)?.[1] ?? 0);

  const digitalNumber = (name: string): number => {
    const analog = /^A(\d+)$/i.exec(name);
    if (analog && Number(analog[1]) < analogCount) return firstAnalog + Number(analog[1]);
    if (/^(LED|LED_BUILTIN)$/i.test(name)) return board.ledPin;
    const digital = /^D?(\d+)$/i.exec(name);
    if (digital) return Number(digital[1]);
    return -1;
  };
  const unknown = (name: string, what: string) =>
    new BoardfleetError(
      'pin-unknown',
      `${board.name} has no ${what} "${name}" (try D0..D${ports.length - 1}, A0..A${analogCount - 1} or LED)`,
    );

  return {
    portPin(name) {
      const number = digitalNumber(name);
      const port = ports[number];
      const bit = bits[number];
      if (port === undefined || bit === undefined) throw unknown(name, 'digital pin');
      return `${port}${bit}`;
    },
    adcChannel(name) {
      const analog = /^A(\d+)$/i.exec(name);
      if (!analog || Number(analog[1]) >= analogCount) throw unknown(name, 'analog input');
      return Number(analog[1]);
    },
  };
}

/** The header with comments removed; a variant that only includes another (nano) is followed. */
function readVariantHeader(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw missingPackage(`The Arduino core's pin table (${path})`, 'arduino-core-avr', error);
  }
  text = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  if (!text.includes('digital_pin_to_port_PGM')) {
    const include = /#include\s+"([^"]*pins_arduino\.h)"/.exec(text)?.[1];
    if (include) return readVariantHeader(join(dirname(path), include)) + text;
  }
  return text;
}

function arrayEntries(header: string, name: string): string[] {
  const body = new RegExp(`${name}\\[\\]\\s*=\\s*\\{([^}]*)\\}`).exec(header)?.[1];
  if (!body)
    throw new BoardfleetError(
      'pin-table-unreadable',
      `No ${name} table in the Arduino core's pins_arduino.h`,
    );
  return body
    .split(',')
    .map((entry) =>
      entry
        .replace(/\s+/g, ' ')
        .trim()
        .replace(/_BV\( /, '_BV(')
        .replace(/ \)/, ')'),
    )
    .filter(Boolean);
}
