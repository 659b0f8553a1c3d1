import { setTimeout as sleep } from 'node:timers/promises';
import {
  type BootloaderProtocol,
  BootloaderReplyError,
  hexBytes,
  type Signature,
  syncBootloader,
} from './bootloader-protocol.ts';
import type { SerialLink } from './serial-link.ts';

/** STK500 version 1 constants (Atmel AVR061), the subset optiboot and ATmegaBOOT answer. */
export const Stk500v1 = {
  CRC_EOP: 0x20,
  RESP_STK_OK: 0x10,
  RESP_STK_INSYNC: 0x14,
  GET_SYNC: 0x30,
  ENTER_PROGMODE: 0x50,
  LEAVE_PROGMODE: 0x51,
  LOAD_ADDRESS: 0x55,
  PROG_PAGE: 0x64,
  READ_PAGE: 0x74,
  READ_SIGN: 0x75,
  MEMTYPE_FLASH: 0x46, // 'F'
} as const;

const SYNC_TIMEOUT_MS = 250;
const SETTLE_MS = 100;
/** A page write takes ~5 ms on the chip; the rest is the serial line and the USB bridge. */
const REPLY_TIMEOUT_MS = 1000;

/** Optiboot / ATmegaBOOT (Uno, Nano, Pro Mini): one command, one `INSYNC … OK` reply. */
export class Stk500v1Protocol implements BootloaderProtocol {
  readonly name = 'stk500v1';

  constructor(private readonly link: SerialLink) {}

  sync(attempts: number): Promise<void> {
    return syncBootloader(this.link, attempts, async () => {
      await this.link.write(Uint8Array.of(Stk500v1.GET_SYNC, Stk500v1.CRC_EOP));
      const reply = await this.link.read(2, SYNC_TIMEOUT_MS);
      if (reply[0] !== Stk500v1.RESP_STK_INSYNC || reply[1] !== Stk500v1.RESP_STK_OK) return false;
      // Answers to earlier attempts may still be on their way and would shift every later
      // reply: let them land, drop them, and confirm with one clean exchange.
      await sleep(SETTLE_MS);
      await this.link.flushInput();
      await this.command([Stk500v1.GET_SYNC], 0);
      await this.command([Stk500v1.ENTER_PROGMODE], 0);
      return true;
    });
  }

  async readSignature(): Promise<Signature> {
    const [a, b, c] = await this.command([Stk500v1.READ_SIGN], 3);
    return [a!, b!, c!];
  }

  async writePage(address: number, data: Uint8Array): Promise<void> {
    await this.loadAddress(address);
    await this.command(
      [Stk500v1.PROG_PAGE, data.length >> 8, data.length & 0xff, Stk500v1.MEMTYPE_FLASH, ...data],
      0,
    );
  }

  async readPage(address: number, length: number): Promise<Uint8Array> {
    await this.loadAddress(address);
    return this.command([Stk500v1.READ_PAGE, length >> 8, length & 0xff, Stk500v1.MEMTYPE_FLASH], length);
  }

  async leave(): Promise<void> {
    await this.command([Stk500v1.LEAVE_PROGMODE], 0);
  }

  /** Flash addresses go over the wire in 16-bit words. */
  private async loadAddress(address: number): Promise<void> {
    const word = address >> 1;
    await this.command([Stk500v1.LOAD_ADDRESS, word & 0xff, (word >> 8) & 0xff], 0);
  }

  private async command(body: number[], replyLength: number): Promise<Uint8Array> {
    await this.link.write(Uint8Array.from([...body, Stk500v1.CRC_EOP]));
    const [insync] = await this.link.read(1, REPLY_TIMEOUT_MS);
    if (insync !== Stk500v1.RESP_STK_INSYNC) {
      throw new BootloaderReplyError(
        `command 0x${hexBytes([body[0]!])} answered 0x${hexBytes([insync!])} instead of INSYNC (0x14)`,
      );
    }
    const reply = await this.link.read(replyLength + 1, REPLY_TIMEOUT_MS);
    if (reply[replyLength] !== Stk500v1.RESP_STK_OK) {
      throw new BootloaderReplyError(
        `command 0x${hexBytes([body[0]!])} ended with 0x${hexBytes([reply[replyLength]!])} instead of OK (0x10)`,
      );
    }
    return reply.subarray(0, replyLength);
  }
}
