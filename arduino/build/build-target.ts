import { readFile } from 'node:fs/promises';
import { BoardfleetError } from '../../protocol/errors.ts';

/** What a build needs to know about a board. */
export interface BuildTarget {
  boardId: string;
  mcu: string;
  fCpu: number;
  /** Flash the application may use: total flash minus the bootloader. */
  flashLimit: number;
  ramLimit: number;
  /** Arduino core variant folder (pin names for sketches) and the ARDUINO_<board> macro. */
  arduinoVariant: string;
  arduinoBoardMacro: string;
}

const BOARDS_TXT = '/usr/share/arduino/hardware/arduino/avr/boards.txt';

/** Our board ids and the Arduino core's entry (plus cpu menu choice) for the same board. */
const ARDUINO_BOARDS: Record<string, { id: string; cpu?: string }> = {
  uno: { id: 'uno' },
  nano: { id: 'nano', cpu: 'atmega328' },
  'pro-mini-5v': { id: 'pro', cpu: '16MHzatmega328' },
  mega2560: { id: 'mega', cpu: 'atmega2560' },
};

export async function resolveBuildTarget(boardId: string): Promise<BuildTarget> {
  const arduino = ARDUINO_BOARDS[boardId];
  if (!arduino) {
    throw new BoardfleetError(
      'board-unknown',
      `Unknown board "${boardId}". Boards that can be built for: ${Object.keys(ARDUINO_BOARDS).join(', ')}`,
    );
  }
  const properties = await readBoardsTxt(arduino);
  const read = (key: string): string => {
    const value = properties.get(key);
    if (value === undefined)
      throw new BoardfleetError('board-invalid', `${BOARDS_TXT} has no ${arduino.id} ${key}`);
    return value;
  };
  return {
    boardId,
    mcu: read('build.mcu'),
    fCpu: Number.parseInt(read('build.f_cpu'), 10),
    flashLimit: Number(read('upload.maximum_size')),
    ramLimit: Number(read('upload.maximum_data_size')),
    arduinoVariant: read('build.variant'),
    arduinoBoardMacro: read('build.board'),
  };
}

/** A board's properties, with its cpu menu choice overriding the general ones. */
async function readBoardsTxt(arduino: { id: string; cpu?: string }): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(BOARDS_TXT, 'utf8');
  } catch {
    throw new BoardfleetError(
      'toolchain-missing',
      `The Arduino core is not installed (${BOARDS_TXT} missing). Install it with: sudo apt-get install arduino-core-avr`,
    );
  }
  const general = new Map<string, string>();
  const menu = new Map<string, string>();
  const menuPrefix = arduino.cpu ? `${arduino.id}.menu.cpu.${arduino.cpu}.` : undefined;
  for (const line of text.split('\n')) {
    const separator = line.indexOf('=');
    if (separator < 0 || line.startsWith('#')) continue;
    const key = line.slice(0, separator).trim();
    const value = line.slice(separator + 1).trim();
    if (menuPrefix && key.startsWith(menuPrefix)) menu.set(key.slice(menuPrefix.length), value);
    else if (key.startsWith(`${arduino.id}.`) && !key.startsWith(`${arduino.id}.menu.`))
      general.set(key.slice(arduino.id.length + 1), value);
  }
  return new Map([...general, ...menu]);
}
