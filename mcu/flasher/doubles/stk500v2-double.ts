import { getBoard } from '../../../boards/board-catalogue.ts';
import { encodeStk500v2Frame, Stk500v2 } from '../stk500v2.ts';
import { BootloaderDouble, type DoubleLink } from './bootloader-double.ts';

const STATUS_CMD_FAILED = 0xc0;

/**
 * The Mega 2560 "wiring" bootloader as the host sees it: AVR068 frames, answered with the same
 * sequence number; a frame with a bad checksum is dropped, as the firmware does.
 */
export class Stk500v2Double extends BootloaderDouble {
  address = 0;
  /** How many LOAD_ADDRESS commands carried the extended-address flag (bit 31). */
  extendedAddressLoads = 0;
  private dtr = false;

  constructor(
    readonly path = '/dev/ttyACM0',
    boardId = 'mega2560',
  ) {
    const board = getBoard(boardId);
    super({
      flashSize: board.flash.size,
      bootloaderSize: board.flash.bootloaderSize,
      signature: board.signature,
      baudRate: board.upload.baudRate,
    });
  }

  get paths(): string[] {
    return [this.path];
  }

  override onSignals(_link: DoubleLink, signals: { dtr?: boolean }): void {
    if (signals.dtr === true && !this.dtr) this.mode = 'bootloader';
    if (signals.dtr !== undefined) this.dtr = signals.dtr;
  }

  override onClose(): void {
    this.dtr = false;
  }

  protected parse(input: number[]): number | undefined {
    if (input[0] !== Stk500v2.MESSAGE_START) return 1;
    if (input.length < 5) return undefined;
    const size = (input[2]! << 8) | input[3]!;
    if (input.length < size + 6) return undefined;
    const frame = input.slice(0, size + 6);
    if (frame[4] !== Stk500v2.TOKEN || frame.reduce((sum, value) => sum ^ value, 0) !== 0) return size + 6;
    const sequence = frame[1]!;
    const body = frame.slice(5, 5 + size);
    const answer = (...data: number[]) => this.reply(encodeStk500v2Frame(sequence, [body[0]!, ...data]));
    switch (body[0]) {
      case Stk500v2.CMD_SIGN_ON:
        answer(Stk500v2.STATUS_CMD_OK, 8, ...Buffer.from('AVRISP_2'));
        break;
      case Stk500v2.CMD_ENTER_PROGMODE_ISP:
        answer(Stk500v2.STATUS_CMD_OK);
        break;
      case Stk500v2.CMD_LOAD_ADDRESS: {
        const value = ((body[1]! << 24) | (body[2]! << 16) | (body[3]! << 8) | body[4]!) >>> 0;
        if (value & Stk500v2.EXTENDED_ADDRESS_FLAG) this.extendedAddressLoads++;
        this.address = (value & 0x7fffffff) * 2;
        answer(Stk500v2.STATUS_CMD_OK);
        break;
      }
      case Stk500v2.CMD_PROGRAM_FLASH_ISP: {
        if (!this.countPage()) return input.length;
        const length = (body[1]! << 8) | body[2]!;
        this.writeFlash(this.address, body.slice(10, 10 + length));
        this.address += length;
        answer(Stk500v2.STATUS_CMD_OK);
        break;
      }
      case Stk500v2.CMD_READ_FLASH_ISP: {
        const length = (body[1]! << 8) | body[2]!;
        answer(Stk500v2.STATUS_CMD_OK, ...this.readFlash(this.address, length), Stk500v2.STATUS_CMD_OK);
        this.address += length;
        break;
      }
      case Stk500v2.CMD_READ_SIGNATURE_ISP:
        answer(Stk500v2.STATUS_CMD_OK, this.options.signature[body[4]! & 3] ?? 0, Stk500v2.STATUS_CMD_OK);
        break;
      case Stk500v2.CMD_LEAVE_PROGMODE_ISP:
        answer(Stk500v2.STATUS_CMD_OK);
        this.startApp();
        break;
      default:
        answer(STATUS_CMD_FAILED);
    }
    return size + 6;
  }
}
