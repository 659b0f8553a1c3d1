import { LinkTimeoutError, type SerialLink } from './serial-link.ts';

/** The three signature bytes an AVR reports, in the order the datasheets print them. */
export type Signature = [number, number, number];

export type ProtocolName = 'stk500v1' | 'stk500v2' | 'avr109';

/**
 * What flashing needs from a bootloader, whichever protocol it speaks. Addresses are byte
 * addresses; each protocol converts to words where it must.
 */
export interface BootloaderProtocol {
  readonly name: ProtocolName;
  /** Gets the bootloader's attention (and into programming mode); throws `BootloaderNoAnswerError`. */
  sync(attempts: number): Promise<void>;
  readSignature(): Promise<Signature>;
  /** Writes one flash page; `data` is a whole page. */
  writePage(address: number, data: Uint8Array): Promise<void>;
  readPage(address: number, length: number): Promise<Uint8Array>;
  /** Leaves the bootloader so the new sketch starts. */
  leave(): Promise<void>;
}

export class BootloaderNoAnswerError extends Error {
  constructor(readonly attempts: number) {
    super(`no answer after ${attempts} attempts`);
    this.name = 'BootloaderNoAnswerError';
  }
}

/** The bootloader answered, but not what the protocol says it should. */
export class BootloaderReplyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootloaderReplyError';
  }
}

/**
 * The sync loop every protocol shares. `hello` makes one attempt and resolves true once the
 * bootloader answered properly (and is in programming mode). Silence or a wrong answer earns
 * another attempt, after dropping whatever did arrive: a half-read reply or echoed noise would
 * shift every later answer. After `attempts` tries: `BootloaderNoAnswerError`.
 */
export async function syncBootloader(
  link: Pick<SerialLink, 'flushInput'>,
  attempts: number,
  hello: () => Promise<boolean>,
): Promise<void> {
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      if (await hello()) return;
    } catch (error) {
      if (!(error instanceof LinkTimeoutError) && !(error instanceof BootloaderReplyError)) throw error;
    }
    await link.flushInput();
  }
  throw new BootloaderNoAnswerError(attempts);
}

export function hexBytes(bytes: ArrayLike<number>): string {
  return Array.from(bytes, (value) => value.toString(16).padStart(2, '0')).join(' ');
}
