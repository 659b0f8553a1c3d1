import { getBoard } from '../../../boards/board-catalogue.ts';
import { BootloaderDouble, type DoubleLink } from './bootloader-double.ts';

const CR = 0x0d;
const code = (letter: string) => letter.charCodeAt(0);

export interface CaterinaDoubleOptions {
  /** Where the sketch's USB serial port shows up. */
  sketchPath?: string;
  /** Where the bootloader's port shows up: a new path, or the sketch's path reused. */
  bootloaderPath?: string;
  /** From the close at 1200 baud until the bootloader's port is listed (USB re-enumeration). */
  reenumerateMs?: number;
  /** When set, the sketch ignores the 1200-baud touch (it hung, or has no USB stack). */
  ignoresTouch?: boolean;
}

/**
 * A Leonardo: native USB, so the host never talks to the sketch's port at the bootloader's
 * rate. Closing that port at 1200 baud restarts the chip; its port vanishes and Caterina's
 * appears after re-enumeration. Caterina speaks AVR109 and, on 'E', starts the sketch (whose
 * port comes back). Caterina ignores the baud rate, as any USB CDC device does.
 */
export class CaterinaDouble extends BootloaderDouble {
  /** Word address, shown as a byte address; AVR109 auto-increments it. */
  address = 0;
  readonly sketchPath: string;
  readonly bootloaderPath: string;
  private present: 'sketch' | 'bootloader' | 'none' = 'sketch';
  private readonly reenumerateMs: number;
  private readonly ignoresTouch: boolean;

  constructor(options: CaterinaDoubleOptions = {}) {
    const board = getBoard('leonardo');
    super({
      flashSize: board.flash.size,
      bootloaderSize: board.flash.bootloaderSize,
      signature: board.signature,
      baudRate: board.upload.baudRate,
    });
    this.sketchPath = options.sketchPath ?? '/dev/ttyACM0';
    this.bootloaderPath = options.bootloaderPath ?? '/dev/ttyACM1';
    this.reenumerateMs = options.reenumerateMs ?? 300;
    this.ignoresTouch = options.ignoresTouch ?? false;
  }

  get paths(): string[] {
    if (this.present === 'sketch') return [this.sketchPath];
    if (this.present === 'bootloader') return [this.bootloaderPath];
    return [];
  }

  /** A `SerialPort.list()` stand-in: this board plus whatever else is plugged in. */
  readonly listPorts = async (): Promise<Array<{ path: string }>> =>
    [...this.paths, '/dev/ttyS0'].map((path) => ({ path }));

  /** USB CDC has no baud rate on the wire: Caterina answers whatever the host set. */
  override receive(link: DoubleLink, bytes: Uint8Array): void {
    if (this.present !== 'bootloader' || this.faults.silent) return;
    this.mode = 'bootloader';
    this.input.push(...bytes);
    while (this.input.length > 0) {
      const consumed = this.parse(this.input);
      if (consumed === undefined || link.closed) return;
      this.input.splice(0, consumed);
    }
  }

  override onClose(link: DoubleLink): void {
    if (this.present !== 'sketch' || link.baudRate !== 1200 || this.ignoresTouch) return;
    this.present = 'none';
    setTimeout(() => {
      this.present = 'bootloader';
    }, this.reenumerateMs);
  }

  protected parse(input: number[]): number | undefined {
    const command = String.fromCharCode(input[0]!);
    const need = (length: number) => input.length >= length;
    switch (command) {
      case 'S':
        this.reply(Buffer.from('CATERIN'));
        return 1;
      case 'V':
        this.reply(Buffer.from('10'));
        return 1;
      case 'p':
        this.reply([code('S')]);
        return 1;
      case 'a':
        this.reply([code('Y')]);
        return 1;
      case 'b':
        this.reply([code('Y'), 0x00, 0x80]);
        return 1;
      case 's':
        this.reply([...this.options.signature].reverse());
        return 1;
      case 'P':
      case 'L':
        this.reply([CR]);
        return 1;
      case 'E':
        this.reply([CR]);
        this.exitToSketch();
        return 1;
      case 'A':
        if (!need(3)) return undefined;
        this.address = ((input[1]! << 8) | input[2]!) * 2;
        this.reply([CR]);
        return 3;
      case 'B': {
        if (!need(4)) return undefined;
        const length = (input[1]! << 8) | input[2]!;
        if (!need(4 + length)) return undefined;
        if (input[3] !== code('F')) {
          this.reply([code('?')]);
          return 4 + length;
        }
        if (!this.countPage()) {
          this.present = 'none';
          return input.length;
        }
        this.writeFlash(this.address, input.slice(4, 4 + length));
        this.address += length;
        this.reply([CR]);
        return 4 + length;
      }
      case 'g': {
        if (!need(4)) return undefined;
        const length = (input[1]! << 8) | input[2]!;
        this.reply(this.readFlash(this.address, length));
        this.address += length;
        return 4;
      }
      default:
        this.reply([code('?')]);
        return 1;
    }
  }

  /** The sketch's port comes back once the bootloader has jumped to it. */
  private exitToSketch(): void {
    this.startApp();
    this.present = 'none';
    setTimeout(() => {
      this.present = 'sketch';
    }, this.reenumerateMs);
  }

  override replug(): void {
    this.present = 'sketch';
    this.mode = 'app';
  }
}
