import { createRequire } from 'node:module';

/**
 * Fails with how to fix it when the native part of the serialport 8 that johnny-five's own
 * firmata opens ports with is not built.
 */
export function assertJohnnyFiveSerialportBuilt(): void {
  try {
    createRequire(import.meta.url)('@serialport/bindings');
  } catch (error) {
    throw new Error(
      `johnny-five's serialport 8 has no native binding (${(error as Error).message}): ` +
        'npm ci builds it; in an existing checkout run npm rebuild @serialport/bindings (needs make, g++ and python3)',
    );
  }
}
