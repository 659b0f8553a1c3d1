import { setTimeout as sleep } from 'node:timers/promises';
import {
  type BootloaderProtocol,
  BootloaderReplyError,
  hexBytes,
  type Signature,
  syncBootloader,
} from './bootloader-protocol.ts';
import type { OpenLink, SerialLink } from './serial-link.ts';

const CR = 0x0d;
const SYNC_TIMEOUT_MS = 300;
const SETTLE_MS = 50;
const REPLY_TIMEOUT_MS = 1000;
const ascii = (text: string) => text.charCodeAt(0);

/** Caterina (Leonardo, Micro): AVR109 single-letter commands, most answered with a carriage return. */
export class Avr109Protocol implements BootloaderProtocol {
  readonly name = 'avr109';

  constructor(private readonly link: SerialLink) {}

  /** Asks for the software id ('S', seven characters such as "CATERIN"), then enters programming mode. */
  sync(attempts: number): Promise<void> {
    return syncBootloader(this.link, attempts, async () => {
      await this.link.write(Uint8Array.of(ascii('S')));
      await this.link.read(7, SYNC_TIMEOUT_MS);
      // Drop a late answer to an earlier attempt before the replies start to count.
      await sleep(SETTLE_MS);
      await this.link.flushInput();
      await this.command([ascii('P')]);
      return true;
    });
  }

  /** AVR109 sends the signature last byte first. */
  async readSignature(): Promise<Signature> {
    await this.link.write(Uint8Array.of(ascii('s')));
    const [c, b, a] = await this.link.read(3, REPLY_TIMEOUT_MS);
    return [a!, b!, c!];
  }

  async writePage(address: number, data: Uint8Array): Promise<void> {
    await this.setAddress(address);
    await this.command([ascii('B'), data.length >> 8, data.length & 0xff, ascii('F'), ...data]);
  }

  async readPage(address: number, length: number): Promise<Uint8Array> {
    await this.setAddress(address);
    await this.link.write(Uint8Array.of(ascii('g'), length >> 8, length & 0xff, ascii('F')));
    return this.link.read(length, REPLY_TIMEOUT_MS);
  }

  /** 'L' leaves programming mode, 'E' exits the bootloader into the sketch. */
  async leave(): Promise<void> {
    await this.command([ascii('L')]);
    await this.command([ascii('E')]);
  }

  /** Flash addresses are in words. */
  private async setAddress(address: number): Promise<void> {
    const word = address >> 1;
    await this.command([ascii('A'), (word >> 8) & 0xff, word & 0xff]);
  }

  private async command(bytes: number[]): Promise<void> {
    await this.link.write(Uint8Array.from(bytes));
    const [reply] = await this.link.read(1, REPLY_TIMEOUT_MS);
    if (reply !== CR) {
      throw new BootloaderReplyError(
        `command '${String.fromCharCode(bytes[0]!)}' answered 0x${hexBytes([reply!])} instead of a carriage return`,
      );
    }
  }
}

/**
 * Opening and closing a native-USB board's port at 1200 baud asks its sketch to restart into the
 * bootloader. The port then vanishes and a bootloader port appears.
 */
export async function touchAt1200Baud(path: string, openLink: OpenLink): Promise<void> {
  const link = await openLink(path, 1200);
  // Dropping DTR is what makes the USB stack act on the 1200-baud line setting.
  await link.setSignals({ dtr: false }).catch(() => undefined);
  await link.close();
}

export interface WaitForPortOptions {
  listPorts: () => Promise<Array<{ path: string }>>;
  timeoutMs?: number;
  pollMs?: number;
}

/**
 * After the touch: the bootloader's port, either a path that was not there before, or the old
 * path once it has gone and come back (Linux reuses /dev/ttyACM0 when nothing holds it).
 * Resolves undefined when none shows up in time.
 */
export async function waitForBootloaderPort(
  oldPath: string,
  pathsBefore: string[],
  { listPorts, timeoutMs = 10_000, pollMs = 100 }: WaitForPortOptions,
): Promise<string | undefined> {
  const before = new Set(pathsBefore);
  const deadline = Date.now() + timeoutMs;
  let oldPathGone = false;
  while (Date.now() < deadline) {
    const paths = (await listPorts()).map((port) => port.path);
    const added = paths.find((path) => !before.has(path));
    if (added) return added;
    if (!paths.includes(oldPath)) oldPathGone = true;
    else if (oldPathGone) return oldPath;
    await sleep(pollMs);
  }
  return undefined;
}
