import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import {
  AVRADC,
  AVRIOPort,
  type AVRPortConfig,
  AVRTimer,
  AVRUSART,
  adcConfig,
  avrInstruction,
  CPU,
  PinState,
  portAConfig,
  portBConfig,
  portCConfig,
  portDConfig,
  portEConfig,
  portFConfig,
  portGConfig,
  portHConfig,
  portJConfig,
  portKConfig,
  portLConfig,
  timer0Config,
  timer1Config,
  timer2Config,
  usart0Config,
} from 'avr8js';

const CLOCK_HZ = 16_000_000;
/** Simulated time run between yields to the event loop. */
const SLICE_CYCLES = CLOCK_HZ / 200;

export type PortName = 'A' | 'B' | 'C' | 'D' | 'E' | 'F' | 'G' | 'H' | 'J' | 'K' | 'L';
export type SimulatedMcu = 'atmega328p' | 'atmega2560';

/** avr8js's peripheral configs describe the ATmega328P; the Mega's interrupt vectors sit elsewhere. */
const MCU_PROFILES = {
  atmega328p: {
    flashBytes: 32 * 1024,
    // Data space: 256 bytes of registers and I/O, then 2 KB of SRAM.
    dataBytes: 2048 + 0x100,
    ports: { B: portBConfig, C: portCConfig, D: portDConfig } as Partial<Record<PortName, AVRPortConfig>>,
    timers: [timer0Config, timer1Config, timer2Config],
    usart: usart0Config,
    adc: adcConfig,
  },
  atmega2560: {
    flashBytes: 256 * 1024,
    // Data space: 512 bytes of registers and extended I/O, then 8 KB of SRAM.
    dataBytes: 8192 + 0x200,
    ports: {
      A: portAConfig,
      B: portBConfig,
      C: portCConfig,
      D: portDConfig,
      E: portEConfig,
      F: portFConfig,
      G: portGConfig,
      H: portHConfig,
      J: portJConfig,
      K: portKConfig,
      L: portLConfig,
    } as Partial<Record<PortName, AVRPortConfig>>,
    timers: [
      {
        ...timer0Config,
        compAInterrupt: 0x2a,
        compBInterrupt: 0x2c,
        ovfInterrupt: 0x2e,
        compPortA: portBConfig.PORT,
        compPinA: 7,
        compPortB: portGConfig.PORT,
        compPinB: 5,
      },
      {
        ...timer1Config,
        captureInterrupt: 0x20,
        compAInterrupt: 0x22,
        compBInterrupt: 0x24,
        ovfInterrupt: 0x28,
        compPinA: 5,
        compPinB: 6,
      },
      {
        ...timer2Config,
        compAInterrupt: 0x1a,
        compBInterrupt: 0x1c,
        ovfInterrupt: 0x1e,
        compPortA: portBConfig.PORT,
        compPinA: 4,
        compPortB: portHConfig.PORT,
        compPinB: 6,
      },
    ],
    usart: {
      ...usart0Config,
      rxCompleteInterrupt: 0x32,
      dataRegisterEmptyInterrupt: 0x34,
      txCompleteInterrupt: 0x36,
    },
    adc: { ...adcConfig, adcInterrupt: 0x3a },
  },
};

/**
 * An ATmega328P (Uno) or ATmega2560 (Mega) at 16 MHz simulated in-process by avr8js, running a
 * .hex directly (avr8js cannot run a bootloader, so there is no flashing step). Test double for
 * a real board: in the background it is paced to real time so host-side timeouts mean what
 * they say.
 */
export class Avr8jsBoard {
  readonly cpu: CPU;
  readonly ports: Partial<Record<PortName, AVRIOPort>>;
  readonly adc: AVRADC;
  private readonly usart: AVRUSART;
  private readonly pendingRx: number[] = [];
  private readonly transmitListeners = new Set<(byte: number) => void>();
  private running = false;
  private stopped: Promise<void> = Promise.resolve();

  private constructor(program: Uint16Array, mcu: SimulatedMcu) {
    const profile = MCU_PROFILES[mcu];
    this.cpu = new CPU(program, profile.dataBytes - 0x100);
    for (const timer of profile.timers) new AVRTimer(this.cpu, timer);
    this.usart = new AVRUSART(this.cpu, profile.usart, CLOCK_HZ);
    this.usart.onByteTransmit = (byte) => {
      for (const listener of this.transmitListeners) listener(byte);
    };
    this.adc = new AVRADC(this.cpu, profile.adc);
    this.ports = Object.fromEntries(
      Object.entries(profile.ports).map(([name, config]) => [name, new AVRIOPort(this.cpu, config)]),
    );
  }

  static async fromHex(hexPath: string, mcu: SimulatedMcu = 'atmega328p'): Promise<Avr8jsBoard> {
    return new Avr8jsBoard(parseIntelHex(await readFile(hexPath, 'utf8'), MCU_PROFILES[mcu].flashBytes), mcu);
  }

  port(name: PortName): AVRIOPort {
    const port = this.ports[name];
    if (!port) throw new Error(`the simulated MCU has no port ${name}`);
    return port;
  }

  /** Simulated milliseconds since reset. */
  get millis(): number {
    return (this.cpu.cycles / CLOCK_HZ) * 1000;
  }

  onTransmit(listener: (byte: number) => void): () => void {
    this.transmitListeners.add(listener);
    return () => this.transmitListeners.delete(listener);
  }

  /** Queues bytes for the board's serial receiver; they arrive at the programmed baud rate. */
  send(bytes: Iterable<number>): void {
    this.pendingRx.push(...bytes);
  }

  /** Drives an input pin from outside, like a button wired to it. */
  setInput(port: PortName, bit: number, high: boolean): void {
    this.port(port).setPin(bit, high);
  }

  pinState(port: PortName, bit: number): PinState {
    return this.port(port).pinState(bit);
  }

  /** Sets the voltage on an ADC input (AVcc is 5 V). */
  setAnalogVolts(channel: number, volts: number): void {
    this.adc.channelValues[channel] = volts;
  }

  /** Runs the simulation for a span of simulated time, as fast as the host allows. */
  async runFor(milliseconds: number): Promise<void> {
    const end = this.cpu.cycles + (milliseconds / 1000) * CLOCK_HZ;
    while (this.cpu.cycles < end) {
      this.runCycles(Math.min(SLICE_CYCLES, end - this.cpu.cycles));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Runs in the background, no faster than real time, until `stop()`. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopped = (async () => {
      const wallStart = performance.now();
      const simulatedStart = this.millis;
      while (this.running) {
        this.runCycles(SLICE_CYCLES);
        const ahead = this.millis - simulatedStart - (performance.now() - wallStart);
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

  private runCycles(cycles: number): void {
    const end = this.cpu.cycles + cycles;
    while (this.cpu.cycles < end) {
      if (this.pendingRx.length > 0 && !this.usart.rxBusy)
        this.usart.writeByte(this.pendingRx.shift() as number);
      avrInstruction(this.cpu);
      this.cpu.tick();
    }
  }
}

/**
 * A serial-port-like transport over the simulated USART, for firmata-io's `new Firmata(transport)`.
 * Starts the simulation, in real time, just after it reports itself open.
 */
export class Avr8jsTransport extends EventEmitter {
  constructor(private readonly board: Avr8jsBoard) {
    super();
    board.onTransmit((byte) => this.emit('data', Buffer.from([byte])));
    // Like a port whose opening resets the board: it starts once the host is listening.
    setImmediate(() => {
      this.emit('open');
      board.start();
    });
  }

  write(data: Buffer | number[], callback?: (error?: Error | null) => void): boolean {
    this.board.send(data);
    callback?.(null);
    return true;
  }

  /** Stops the simulation; callback-style, like SerialPort.close. */
  close(callback?: (error?: Error | null) => void): void {
    this.board.stop().then(() => {
      this.emit('close');
      callback?.(null);
    });
  }
}

function parseIntelHex(text: string, flashBytes: number): Uint16Array {
  const bytes = new Uint8Array(flashBytes);
  let base = 0;
  for (const line of text.split(/\r?\n/)) {
    if (!line.startsWith(':')) continue;
    const record = Buffer.from(line.slice(1), 'hex');
    const length = record[0] ?? 0;
    const address = ((record[1] ?? 0) << 8) | (record[2] ?? 0);
    const type = record[3];
    if (type === 0x00) bytes.set(record.subarray(4, 4 + length), base + address);
    if (type === 0x02) base = (((record[4] ?? 0) << 8) | (record[5] ?? 0)) << 4;
    if (type === 0x04) base = (((record[4] ?? 0) << 8) | (record[5] ?? 0)) << 16;
  }
  return new Uint16Array(bytes.buffer);
}
