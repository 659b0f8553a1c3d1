import {
  type BootloaderProtocol,
  BootloaderReplyError,
  hexBytes,
  type Signature,
  syncBootloader,
} from './bootloader-protocol.ts';
import type { SerialLink } from './serial-link.ts';

/** STK500 version 2 constants (Atmel AVR068), the subset the Mega 2560 "wiring" bootloader answers. */
export const Stk500v2 = {
  MESSAGE_START: 0x1b,
  TOKEN: 0x0e,
  CMD_SIGN_ON: 0x01,
  CMD_LOAD_ADDRESS: 0x06,
  CMD_ENTER_PROGMODE_ISP: 0x10,
  CMD_LEAVE_PROGMODE_ISP: 0x11,
  CMD_PROGRAM_FLASH_ISP: 0x13,
  CMD_READ_FLASH_ISP: 0x14,
  CMD_READ_SIGNATURE_ISP: 0x1b,
  STATUS_CMD_OK: 0x00,
  /** In LOAD_ADDRESS: the address needs the extended (third) byte, for flash beyond 128 KiB. */
  EXTENDED_ADDRESS_FLAG: 0x80000000,
} as const;

const SYNC_TIMEOUT_MS = 300;
const REPLY_TIMEOUT_MS = 1000;
/** The ISP instruction bytes AVR068 carries along; the bootloader ignores most but they are part of the frame. */
const ISP = {
  enterProgmode: [200, 100, 25, 32, 0, 0x53, 3, 0xac, 0x53, 0x00, 0x00],
  programFlashMode: 0xc1, // page mode, write the page at the end
  programFlashDelay: 10,
  loadPageLow: 0x40,
  writePage: 0x4c,
  readFlashLow: 0x20,
  readSignature: 0x30,
} as const;

/** Framed messages: start, sequence number, 16-bit size, token, body, XOR checksum of all of it. */
export function encodeStk500v2Frame(sequence: number, body: ArrayLike<number>): Uint8Array {
  const frame = new Uint8Array(body.length + 6);
  frame.set([Stk500v2.MESSAGE_START, sequence & 0xff, body.length >> 8, body.length & 0xff, Stk500v2.TOKEN]);
  frame.set(body, 5);
  frame[frame.length - 1] = frame.subarray(0, -1).reduce((checksum, value) => checksum ^ value, 0);
  return frame;
}

/** Mega 2560's bootloader: ISP-style commands in checksummed frames. */
export class Stk500v2Protocol implements BootloaderProtocol {
  readonly name = 'stk500v2';
  private sequence = 0;

  constructor(
    private readonly link: SerialLink,
    /** Flash bigger than 128 KiB needs the extended-address flag on every LOAD_ADDRESS. */
    private readonly flashSize: number,
  ) {}

  sync(attempts: number): Promise<void> {
    return syncBootloader(this.link, attempts, async () => {
      const reply = await this.exchange([Stk500v2.CMD_SIGN_ON], SYNC_TIMEOUT_MS);
      if (reply.length < 3) return false;
      await this.exchange([Stk500v2.CMD_ENTER_PROGMODE_ISP, ...ISP.enterProgmode]);
      return true;
    });
  }

  async readSignature(): Promise<Signature> {
    const signature: number[] = [];
    for (let index = 0; index < 3; index++) {
      const reply = await this.exchange([Stk500v2.CMD_READ_SIGNATURE_ISP, 4, ISP.readSignature, 0, index, 0]);
      signature.push(reply[2]!);
    }
    return signature as Signature;
  }

  async writePage(address: number, data: Uint8Array): Promise<void> {
    await this.loadAddress(address);
    await this.exchange([
      Stk500v2.CMD_PROGRAM_FLASH_ISP,
      data.length >> 8,
      data.length & 0xff,
      ISP.programFlashMode,
      ISP.programFlashDelay,
      ISP.loadPageLow,
      ISP.writePage,
      ISP.readFlashLow,
      0x00,
      0x00,
      ...data,
    ]);
  }

  async readPage(address: number, length: number): Promise<Uint8Array> {
    await this.loadAddress(address);
    const reply = await this.exchange([
      Stk500v2.CMD_READ_FLASH_ISP,
      length >> 8,
      length & 0xff,
      ISP.readFlashLow,
    ]);
    // Reply: command, status, data…, status.
    if (reply.length !== length + 3) {
      throw new BootloaderReplyError(
        `READ_FLASH_ISP returned ${reply.length - 3} bytes instead of ${length}`,
      );
    }
    return reply.subarray(2, 2 + length);
  }

  async leave(): Promise<void> {
    await this.exchange([Stk500v2.CMD_LEAVE_PROGMODE_ISP, 1, 1]);
  }

  private async loadAddress(address: number): Promise<void> {
    const word = (address >>> 1) | (this.flashSize > 0x20000 ? Stk500v2.EXTENDED_ADDRESS_FLAG : 0);
    await this.exchange([
      Stk500v2.CMD_LOAD_ADDRESS,
      word >>> 24,
      (word >>> 16) & 0xff,
      (word >>> 8) & 0xff,
      word & 0xff,
    ]);
  }

  /** Sends one message and returns the reply's body, checked for sequence, checksum and status. */
  private async exchange(body: number[], timeoutMs = REPLY_TIMEOUT_MS): Promise<Uint8Array> {
    this.sequence = (this.sequence + 1) & 0xff;
    const sequence = this.sequence;
    await this.link.write(encodeStk500v2Frame(sequence, body));
    for (;;) {
      const { sequence: replySequence, reply } = await this.readFrame(timeoutMs);
      // A late answer to an earlier attempt: skip it rather than take it for this one.
      if (replySequence !== sequence) continue;
      if (reply[0] !== body[0] || reply[1] !== Stk500v2.STATUS_CMD_OK) {
        throw new BootloaderReplyError(
          `command 0x${hexBytes([body[0]!])} answered ${hexBytes(reply.subarray(0, 2))} instead of ${hexBytes([body[0]!, 0])}`,
        );
      }
      return reply;
    }
  }

  private async readFrame(timeoutMs: number): Promise<{ sequence: number; reply: Uint8Array }> {
    let start = (await this.link.read(1, timeoutMs))[0];
    // Skip whatever a sketch printed before the reset took.
    for (let skipped = 0; start !== Stk500v2.MESSAGE_START; skipped++) {
      if (skipped > 300) throw new BootloaderReplyError('no message start (0x1b) in the reply');
      start = (await this.link.read(1, timeoutMs))[0];
    }
    const header = await this.link.read(4, timeoutMs);
    const size = (header[1]! << 8) | header[2]!;
    if (header[3] !== Stk500v2.TOKEN)
      throw new BootloaderReplyError(`reply token is 0x${hexBytes([header[3]!])}, not 0x0e`);
    const rest = await this.link.read(size + 1, timeoutMs);
    const checksum = [Stk500v2.MESSAGE_START, ...header, ...rest].reduce((sum, value) => sum ^ value, 0);
    if (checksum !== 0) throw new BootloaderReplyError('reply checksum is wrong');
    return { sequence: header[0]!, reply: rest.subarray(0, size) };
  }
}
