import type { Uf2Board } from '../../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../../protocol/errors.ts';
import type { BoardPins } from '../board-pins.ts';

/** GP0..GP28 come out on the Pico's pins (GP29 measures VSYS on the board). */
export const PICO_GPIO_COUNT = 29;
/** A0..A2, as printed on the Pico: ADC0..ADC2 on GP26..GP28. */
export const PICO_ANALOG_INPUTS = 3;
const PICO_ADC_FIRST_GPIO = 26;
/** The ADC's reference on a Pico: ADC_VREF from the 3.3 V rail. */
export const PICO_ADC_REFERENCE_MV = 3300;

/**
 * The Pico's pin names for the control socket: `GP0`..`GP28` (also `D25` or `25`, as Firmata
 * numbers them), `LED` for the board's LED pin, and `A0`..`A2` for GP26..GP28.
 */
export function picoPins(board: Uf2Board): BoardPins {
  const unknown = (name: string, what: string) =>
    new BoardfleetError(
      'pin-unknown',
      `${board.name} has no ${what} "${name}" (try GP0..GP${PICO_GPIO_COUNT - 1}, A0..A${PICO_ANALOG_INPUTS - 1} or LED)`,
    );
  const analogChannel = (name: string) => {
    const analog = /^A(\d+)$/i.exec(name);
    return analog && Number(analog[1]) < PICO_ANALOG_INPUTS ? Number(analog[1]) : undefined;
  };
  return {
    portPin(name) {
      const channel = analogChannel(name);
      if (channel !== undefined) return `GP${PICO_ADC_FIRST_GPIO + channel}`;
      if (/^(LED|LED_BUILTIN)$/i.test(name)) return `GP${board.ledPin}`;
      const gpio = /^(?:GP|D)?(\d+)$/i.exec(name);
      if (!gpio || Number(gpio[1]) >= PICO_GPIO_COUNT) throw unknown(name, 'pin');
      return `GP${Number(gpio[1])}`;
    },
    adcChannel(name) {
      const channel = analogChannel(name);
      if (channel === undefined) throw unknown(name, 'analog input');
      return channel;
    },
  };
}
