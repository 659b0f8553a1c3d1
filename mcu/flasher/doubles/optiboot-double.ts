import { getBoard } from '../../../boards/board-catalogue.ts';
import { Stk500v1 } from '../stk500v1.ts';
import { BootloaderDouble, type DoubleLink } from './bootloader-double.ts';

/**
 * Optiboot (and ATmegaBOOT, which answers the same subset) as the host sees it: STK500v1
 * commands, each ended by CRC_EOP; a missing CRC_EOP makes optiboot reset into the sketch.
 * A DTR pulse resets the board into the bootloader, as the Uno's auto-reset capacitor does.
 */
export class OptibootDouble extends BootloaderDouble {
  /** Word address from the last LOAD_ADDRESS, as a byte address. */
  address = 0;
  private dtr = false;

  constructor(
    readonly path = '/dev/ttyACM0',
    boardId = 'uno',
    baudRate = getBoard(boardId).upload.baudRate,
  ) {
    const board = getBoard(boardId);
    super({
      flashSize: board.flash.size,
      bootloaderSize: board.flash.bootloaderSize,
      signature: board.signature,
      baudRate,
    });
  }

  get paths(): string[] {
    return [this.path];
  }

  override onSignals(_link: DoubleLink, signals: { dtr?: boolean }): void {
    // The reset pin sees the edge when DTR is asserted again after being dropped.
    if (signals.dtr === true && !this.dtr) this.mode = 'bootloader';
    if (signals.dtr !== undefined) this.dtr = signals.dtr;
  }

  override onClose(): void {
    this.dtr = false;
  }

  protected parse(input: number[]): number | undefined {
    const command = input[0]!;
    // Bytes each command carries before its CRC_EOP.
    let argumentLength: number;
    switch (command) {
      case Stk500v1.LOAD_ADDRESS:
        argumentLength = 2;
        break;
      case Stk500v1.PROG_PAGE: {
        if (input.length < 3) return undefined;
        argumentLength = 3 + ((input[1]! << 8) | input[2]!);
        break;
      }
      case Stk500v1.READ_PAGE:
        argumentLength = 3;
        break;
      case 0x41: // GET_PARAMETER
        argumentLength = 1;
        break;
      case 0x42: // SET_DEVICE
        argumentLength = 20;
        break;
      case 0x45: // SET_DEVICE_EXT
        argumentLength = 5;
        break;
      default:
        argumentLength = 0;
    }
    if (input.length < argumentLength + 2) return undefined;
    const args = input.slice(1, 1 + argumentLength);
    if (input[1 + argumentLength] !== Stk500v1.CRC_EOP) {
      // optiboot's verifySpace(): lost sync, so it lets the watchdog restart the chip into the sketch.
      this.startApp();
      return input.length;
    }
    const ok = (...data: number[]) => this.reply([Stk500v1.RESP_STK_INSYNC, ...data, Stk500v1.RESP_STK_OK]);
    switch (command) {
      case Stk500v1.LOAD_ADDRESS:
        this.address = ((args[1]! << 8) | args[0]!) * 2;
        ok();
        break;
      case Stk500v1.PROG_PAGE:
        if (!this.countPage()) return input.length;
        this.writeFlash(this.address, args.slice(3));
        ok();
        break;
      case Stk500v1.READ_PAGE:
        ok(...this.readFlash(this.address, (args[0]! << 8) | args[1]!));
        break;
      case Stk500v1.READ_SIGN:
        ok(...this.options.signature);
        break;
      case 0x41:
        ok(0x03);
        break;
      case Stk500v1.LEAVE_PROGMODE:
        ok();
        this.startApp();
        break;
      default:
        ok();
    }
    return argumentLength + 2;
  }
}
