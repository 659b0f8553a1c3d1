import { EventEmitter } from 'node:events';
import { ConsoleLogger, GPIOPinState, LogLevel, Simulator } from 'rp2040js';
import { getUf2Board } from '../../../boards/board-catalogue.ts';
import { decodeUf2, uf2TargetOf } from '../../../lib/uf2.ts';
import { startFromFlash, stepCore } from '../../../mcu/simulator/rp2040/pico-machine.ts';
/** A start bit, eight data bits and a stop bit. */
const BITS_PER_BYTE = 10;
/** How much simulated time the background run advances between yields to the event loop. */
const SLICE_MS = 5;

export { GPIOPinState };

/**
 * A Pico in rp2040js running a UF2 file, with UART0 and the GPIO watched, started as the bench
 * Pico starts (`startFromFlash`) and stepped as it steps (`stepCore`), but in simulated time the
 * test controls.
 */
export class Rp2040jsPico {
  private readonly simulator = new Simulator();
  readonly mcu = this.simulator.rp2040;
  /** Every byte the firmware sent on UART0. */
  readonly uartBytes: number[] = [];
  /** Simulated nanoseconds the core spent asleep in WFI. */
  waitingNanos = 0;
  private readonly uartListeners = new Set<(byte: number) => void>();
  /** The levels set from outside with setInput, by pin. */
  private readonly externalLevels: boolean[] = [];
  /** Bytes sent to UART0 that have not yet arrived, one per byte time at the board's baud rate. */
  private readonly pendingRx: number[] = [];
  private readonly rxAlarm = this.simulator.clock.createAlarm(() => this.receiveNext());
  private readonly byteNanos: number;
  private running = false;
  private stopped: Promise<void> = Promise.resolve();

  constructor(uf2: Uint8Array) {
    const board = getUf2Board('pico');
    this.byteNanos = (BITS_PER_BYTE * 1e9) / board.serial.baudRate;
    const image = decodeUf2(uf2, uf2TargetOf(board));
    if (!image.ok) throw new Error(`not a Pico UF2 (${image.reason}): ${image.detail}`);
    // rp2040js logs every write to a register it does not model (the SSI's chip select, say).
    this.mcu.logger = new ConsoleLogger(LogLevel.Error);
    this.mcu.flash.set(image.bytes, image.address - board.flash.address);
    const notStarted = startFromFlash(this.mcu);
    if (notStarted) throw new Error(`the boot ROM would not run this image: ${notStarted}`);
    this.mcu.uart[0]!.onByte = (byte) => {
      this.uartBytes.push(byte);
      for (const listener of this.uartListeners) listener(byte);
    };
    // A real pad's input buffer sees the level on the pin: the one its own output drives, else
    // what drives it from outside, else its pull. rp2040js's GPIO_IN shows only what the
    // simulation sets, so set it so.
    for (const [index, pin] of this.mcu.gpio.entries()) {
      pin.addListener((state) => {
        const driven = state === GPIOPinState.High || state === GPIOPinState.Low;
        pin.setInputValue(
          driven
            ? state === GPIOPinState.High
            : (this.externalLevels[index] ?? state === GPIOPinState.InputPullUp),
        );
      });
    }
  }

  get nowMs(): number {
    return this.simulator.clock.nanos / 1e6;
  }

  /** Calls `listener` with each byte the firmware sends on UART0 from now on. */
  onUartByte(listener: (byte: number) => void): void {
    this.uartListeners.add(listener);
  }

  /**
   * Bytes for the firmware to receive on UART0. They arrive at the line's pace, as from a real
   * host: rp2040js's receive FIFO (32 bytes, as on the chip) drops what it has no room for.
   */
  send(bytes: Iterable<number>): void {
    const idle = this.pendingRx.length === 0;
    this.pendingRx.push(...bytes);
    if (idle && this.pendingRx.length > 0) this.rxAlarm.schedule(this.byteNanos);
  }

  private receiveNext(): void {
    const byte = this.pendingRx.shift();
    if (byte !== undefined) this.mcu.uart[0]!.feedByte(byte);
    if (this.pendingRx.length > 0) this.rxAlarm.schedule(this.byteNanos);
  }

  /** What drives GPn now: a level when it is an output, else the kind of input. */
  pinState(pin: number): GPIOPinState {
    return this.mcu.gpio[pin]!.value;
  }

  /** Drives an input pin from outside, as a button or a sensor would. */
  setInput(pin: number, high: boolean): void {
    this.externalLevels[pin] = high;
    this.mcu.gpio[pin]!.setInputValue(high);
  }

  /** Sets the 12-bit value the ADC converts on input `channel` (GP26 + channel). */
  setAdcValue(channel: number, value: number): void {
    this.mcu.adc.channelValues[channel] = value;
  }

  /**
   * Runs the core for `milliseconds` of simulated time, at whatever clk_sys the firmware set.
   * While it sleeps (WFI), time jumps to the next alarm (the timer's, a PWM edge, an ADC sample).
   */
  runFor(milliseconds: number): void {
    const { clock } = this.simulator;
    const until = clock.nanos + milliseconds * 1e6;
    while (clock.nanos < until) this.step(until);
  }

  /** Runs until `condition` holds; throws naming `what` once `patienceMs` of simulated time passed. */
  runUntil(what: string, condition: () => boolean, patienceMs: number): void {
    const { clock } = this.simulator;
    const deadline = clock.nanos + patienceMs * 1e6;
    while (!condition()) {
      if (clock.nanos >= deadline)
        throw new Error(`${what}: not after ${patienceMs} simulated ms (pc 0x${this.pc.toString(16)})`);
      this.step(deadline);
    }
  }

  private step(until: number): void {
    this.waitingNanos += stepCore(this.simulator, until);
  }

  /** Runs for `milliseconds` and returns the fraction of that time GPn was driven high. */
  dutyCycle(pin: number, milliseconds: number): number {
    const startMs = this.nowMs;
    let highMs = 0;
    let highSince = this.pinState(pin) === GPIOPinState.High ? startMs : undefined;
    const stopListening = this.mcu.gpio[pin]!.addListener((state) => {
      if (state === GPIOPinState.High) highSince ??= this.nowMs;
      else if (highSince !== undefined) {
        highMs += this.nowMs - highSince;
        highSince = undefined;
      }
    });
    this.runFor(milliseconds);
    stopListening();
    if (highSince !== undefined) highMs += this.nowMs - highSince;
    return highMs / (this.nowMs - startMs);
  }

  /** Runs in the background, no faster than real time, until `stop()`. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopped = (async () => {
      const wallStart = performance.now();
      const simulatedStart = this.nowMs;
      while (this.running) {
        this.runFor(SLICE_MS);
        const ahead = this.nowMs - simulatedStart - (performance.now() - wallStart);
        await new Promise<void>((resolve) =>
          ahead > 1 ? setTimeout(resolve, ahead) : setImmediate(resolve),
        );
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.stopped;
  }

  /** Where the core is: a firmware stuck in a loop shows here. */
  get pc(): number {
    return this.mcu.core.PC;
  }
}

/**
 * A serial-port-like transport over the simulated UART0, for firmata-io's `new Firmata(transport)`.
 * Starts the simulation, in real time, just after it reports itself open.
 */
export class Rp2040jsTransport extends EventEmitter {
  constructor(private readonly pico: Rp2040jsPico) {
    super();
    pico.onUartByte((byte) => this.emit('data', Buffer.from([byte])));
    // Like a port whose opening resets the board: it starts once the host is listening.
    setImmediate(() => {
      this.emit('open');
      pico.start();
    });
  }

  write(data: Buffer | number[], callback?: (error?: Error | null) => void): boolean {
    this.pico.send(data);
    callback?.(null);
    return true;
  }

  /** Stops the simulation; callback-style, like SerialPort.close. */
  close(callback?: (error?: Error | null) => void): void {
    void this.pico.stop().then(() => {
      this.emit('close');
      callback?.(null);
    });
  }
}
