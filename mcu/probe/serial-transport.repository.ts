import { SerialPort } from 'serialport';
import { BoardfleetError } from '../../protocol/errors.ts';

/** Firmata's customary rate, and firmata.js's default. */
export const FIRMATA_BAUD_RATE = 57_600;

/**
 * Opens a serial port for a Firmata host. Opening asserts DTR, which resets an Uno-style
 * board into its bootloader for about a second before the firmware starts.
 */
export async function openSerialTransport(
  portPath: string,
  baudRate = FIRMATA_BAUD_RATE,
): Promise<SerialPort> {
  const port = new SerialPort({ path: portPath, baudRate, autoOpen: false });
  await new Promise<void>((resolve, reject) => {
    port.open((error) => {
      if (!error) return resolve();
      reject(
        new BoardfleetError(
          'port-open-failed',
          `Cannot open serial port ${portPath}: ${error.message}. Is the board plugged in, and is no other program using the port?`,
          { cause: error },
        ),
      );
    });
  });
  return port;
}
