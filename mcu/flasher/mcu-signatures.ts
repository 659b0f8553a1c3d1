import { hexBytes, type Signature } from './bootloader-protocol.ts';

/** Signature bytes of the AVRs found on Arduino-style boards (from the datasheets). */
const KNOWN_SIGNATURES: Record<string, string> = {
  '1e 95 0f': 'atmega328p',
  '1e 95 14': 'atmega328',
  '1e 95 16': 'atmega328pb',
  '1e 94 06': 'atmega168',
  '1e 94 0b': 'atmega168p',
  '1e 93 0a': 'atmega88',
  '1e 93 0f': 'atmega88p',
  '1e 93 07': 'atmega8',
  '1e 98 01': 'atmega2560',
  '1e 97 03': 'atmega1280',
  '1e 95 87': 'atmega32u4',
  '1e 94 88': 'atmega16u4',
  '1e 96 0a': 'atmega644p',
  '1e 97 05': 'atmega1284p',
  '1e 93 0b': 'attiny85',
  '1e 92 06': 'attiny45',
};

/** "atmega168", or undefined for a signature we do not know. */
export function mcuForSignature(signature: Signature): string | undefined {
  return KNOWN_SIGNATURES[hexBytes(signature)];
}
