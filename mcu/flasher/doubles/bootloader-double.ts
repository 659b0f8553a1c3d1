import { ByteQueue, describeOpenError, LinkLostError, type SerialLink } from '../serial-link.ts';

/** Faults a test can inject into a bootloader double. */
export interface DoubleFaults {
  /** The port vanishes (cable pulled) when this page write (1-based, counted per connection) arrives. */
  loseLinkAtPage?: number;
  /** The bootloader never answers (wrong bootloader, or something else entirely on the port). */
  silent?: boolean;
  /** Flips a bit in what this byte address reads back, as a worn flash cell would. */
  corruptReadAt?: number;
}

export interface BootloaderDoubleOptions {
  flashSize: number;
  bootloaderSize: number;
  signature: [number, number, number];
  /** The rate the bootloader listens at; a host at another rate only produces noise for it. */
  baudRate: number;
}

/**
 * The bootloader's side of a serial line, in process: the protocol doubles parse the host's
 * bytes exactly as the firmware would and keep a flash array. The board (flash, mode) outlives
 * each connection, so a failed flash can be followed by one that recovers it.
 */
export abstract class BootloaderDouble {
  readonly flash: Uint8Array;
  /** `app`: the sketch runs and ignores the host's bytes; `bootloader`: commands are answered. */
  mode: 'app' | 'bootloader' = 'app';
  /** How many times the bootloader handed over to the sketch. */
  appStarts = 0;
  faults: DoubleFaults = {};
  protected pagesThisConnection = 0;
  protected input: number[] = [];
  protected link?: DoubleLink;

  constructor(readonly options: BootloaderDoubleOptions) {
    this.flash = new Uint8Array(options.flashSize).fill(0xff);
  }

  /** The paths this board shows up as right now. */
  abstract get paths(): string[];

  /** Parses one command from the front of `input`: bytes consumed, or undefined until more arrive. */
  protected abstract parse(input: number[]): number | undefined;

  /** An `OpenLink` for `flashBoard`. */
  readonly open = async (path: string, baudRate: number): Promise<SerialLink> => {
    if (!this.paths.includes(path)) {
      throw describeOpenError(path, new Error(`Error: No such file or directory, cannot open ${path}`));
    }
    if (this.link && !this.link.closed) {
      throw describeOpenError(path, new Error('Error Resource temporarily unavailable Cannot lock port'));
    }
    this.link = new DoubleLink(path, baudRate, this);
    this.input = [];
    this.pagesThisConnection = 0;
    this.onOpen(this.link);
    return this.link;
  };

  /** Bytes from the host. Delivered after the write resolves, as a UART would. */
  receive(link: DoubleLink, bytes: Uint8Array): void {
    if (link !== this.link || this.mode !== 'bootloader' || this.faults.silent) return;
    // At the wrong rate every byte arrives garbled; no bootloader answers garbage.
    if (link.baudRate !== this.options.baudRate) return;
    this.input.push(...bytes);
    while (this.input.length > 0) {
      const consumed = this.parse(this.input);
      if (consumed === undefined || link.closed) return;
      this.input.splice(0, consumed);
    }
  }

  onSignals(_link: DoubleLink, _signals: { dtr?: boolean; rts?: boolean }): void {}

  onOpen(_link: DoubleLink): void {}

  onClose(_link: DoubleLink): void {}

  protected reply(bytes: ArrayLike<number>): void {
    this.link?.deliver(Uint8Array.from(bytes));
  }

  /** Called by each double on a page write; applies the `loseLinkAtPage` fault. Returns false when the link is gone. */
  protected countPage(): boolean {
    this.pagesThisConnection++;
    if (this.faults.loseLinkAtPage !== this.pagesThisConnection) return true;
    delete this.faults.loseLinkAtPage;
    this.link?.lose();
    this.mode = 'app';
    return false;
  }

  /** Writes as self-programming does: the bootloader section is locked against it. */
  protected writeFlash(address: number, data: ArrayLike<number>): void {
    const limit = this.options.flashSize - this.options.bootloaderSize;
    for (let i = 0; i < data.length && address + i < limit; i++) this.flash[address + i] = data[i]!;
  }

  protected readFlash(address: number, length: number): Uint8Array {
    const bytes = new Uint8Array(length).fill(0xff);
    bytes.set(this.flash.subarray(address, Math.min(address + length, this.flash.length)));
    const corrupt = this.faults.corruptReadAt;
    if (corrupt !== undefined && corrupt >= address && corrupt < address + length)
      bytes[corrupt - address]! ^= 0x01;
    return bytes;
  }

  /** The cable is plugged back in: power-on reset, which optiboot and its kin hand straight to the sketch. */
  replug(): void {
    this.mode = 'app';
  }

  protected startApp(): void {
    this.mode = 'app';
    this.appStarts++;
  }
}

/** The host's end of an in-process serial line to a bootloader double. */
export class DoubleLink implements SerialLink {
  private readonly queue = new ByteQueue();
  closed = false;

  constructor(
    readonly path: string,
    readonly baudRate: number,
    private readonly device: BootloaderDouble,
  ) {}

  async write(data: Uint8Array): Promise<void> {
    if (this.closed) throw new LinkLostError(this.path);
    const copy = Uint8Array.from(data);
    setImmediate(() => this.device.receive(this, copy));
  }

  read(length: number, timeoutMs: number): Promise<Uint8Array> {
    return this.queue.read(length, timeoutMs);
  }

  async flushInput(): Promise<void> {
    this.queue.clear();
  }

  async setSignals(signals: { dtr?: boolean; rts?: boolean }): Promise<void> {
    if (this.closed) throw new LinkLostError(this.path);
    this.device.onSignals(this, signals);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.queue.fail(new LinkLostError(this.path));
    this.device.onClose(this);
  }

  deliver(bytes: Uint8Array): void {
    if (!this.closed) this.queue.push(bytes);
  }

  /** The device went away under the host: every read and write from now on fails. */
  lose(): void {
    this.closed = true;
    this.queue.fail(new LinkLostError(this.path));
  }
}
