import { ConsoleLogger, LogLevel, type RP2040, Simulator } from 'rp2040js';
import type { PinLevel } from '../simulated-board.ts';
import { BOOT2_SIZE, hasValidBoot2 } from '../../../lib/rp2040-boot2.ts';
import { PICO_ADC_REFERENCE_MV, PICO_GPIO_COUNT } from './pico-pins.ts';

/** Where the boot ROM copies the stage-2 boot and runs it: the last 256 bytes of SRAM. */
const BOOT2_SRAM_ADDRESS = 0x2004_1f00;
const SRAM_START = 0x2000_0000;
const SRAM_END = 0x2004_2000;
const UART_RX_FIFO_FULL = 1 << 6;
const ADC_FULL_SCALE = 4095;

/**
 * rp2040js has no boot ROM, so this plays its part in starting flash code: check the stage-2
 * boot's checksum, copy it to the top of SRAM and run it there, as the datasheet's boot sequence
 * describes. Returns why the ROM would not start it, or undefined once the core is set to run it.
 */
export function startFromFlash(mcu: RP2040): string | undefined {
  if (!hasValidBoot2(mcu.flash)) {
    return 'no valid stage-2 boot in flash (a real Pico would show its BOOTSEL drive)';
  }
  mcu.sram.set(mcu.flash.subarray(0, BOOT2_SIZE), BOOT2_SRAM_ADDRESS - SRAM_START);
  mcu.core.SP = SRAM_END;
  mcu.core.PC = BOOT2_SRAM_ADDRESS;
  return undefined;
}

/**
 * Runs one instruction or, while the core sleeps (WFI), moves time to its next alarm but not past
 * `until` (the simulator's nanoseconds). Returns how long the core slept.
 */
export function stepCore(simulator: Simulator, until: number): number {
  const { clock } = simulator;
  const mcu = simulator.rp2040;
  const { core } = mcu;
  // An enabled interrupt that became pending while PRIMASK was set (between the firmware's
  // `cpsid i` and its WFI) must keep WFI from sleeping (ARMv6-M). rp2040js 1.4.1 sleeps anyway
  // and waits for the next interrupt: a lost wake-up the real chip does not have.
  if (core.waiting && (core.pendingInterrupts & core.enabledInterrupts) !== 0) core.waiting = false;
  if (!core.waiting) {
    clock.tick((core.executeInstruction() * 1e9) / mcu.clkSys);
    return 0;
  }
  // rp2040js says 0 both for an alarm due now and for none: fire what is due, then sleep on.
  clock.tick(0);
  if (!core.waiting) return 0;
  const toAlarm = clock.nanosToNextAlarm;
  const sleep = toAlarm > 0 ? Math.min(toAlarm, until - clock.nanos) : until - clock.nanos;
  clock.tick(sleep);
  return sleep;
}

export interface PicoMachineEvents {
  /** A pin's level changed (driven by the firmware, or by us through `setInput`). */
  pin(gpio: number, level: PinLevel): void;
  /** The firmware sent a byte on UART0. */
  uartByte(byte: number): void;
  /** The core cannot run until the next reset. */
  halted(why: string): void;
}

/**
 * One Pico in rp2040js: the flash image, the core and its peripherals, and what the outside world
 * drives (inputs, voltages), which outlives a reset. A reset makes a fresh RP2040, as every
 * peripheral of a real one returns to its reset state, and starts it as the boot ROM does.
 */
export class PicoMachine {
  private simulator!: Simulator;
  private mcu!: RP2040;
  /** Simulated time of the cores before the current one: the board's time runs on across resets. */
  private earlierNanos = 0;
  private readonly levels = new Map<number, PinLevel>();
  /** What each pad's input buffer sees, as last handed to rp2040js. */
  private readonly padInputs = new Map<number, PinLevel>();
  private readonly drivenInputs = new Map<number, PinLevel>();
  private readonly adcMillivolts = new Map<number, number>();
  /** Why the core is stopped until the next reset, if it is. */
  halted: string | undefined;

  constructor(
    readonly flash: Uint8Array,
    private readonly events: PicoMachineEvents,
  ) {
    for (let gpio = 0; gpio < PICO_GPIO_COUNT; gpio++) this.levels.set(gpio, 0);
    this.reset();
  }

  /** The board's time in ns since it was made (resets do not restart it). */
  get nanos(): number {
    return this.earlierNanos + this.simulator.clock.nanos;
  }

  reset(): void {
    if (this.simulator) this.earlierNanos += this.simulator.clock.nanos;
    this.simulator = new Simulator();
    this.mcu = this.simulator.rp2040;
    // rp2040js logs every write to a register it does not model (the SSI's chip select, say).
    this.mcu.logger = new ConsoleLogger(LogLevel.Error);
    this.mcu.flash.set(this.flash);
    this.mcu.uart[0]!.onByte = (byte) => this.events.uartByte(byte);
    this.padInputs.clear();
    this.mcu.gpio.slice(0, PICO_GPIO_COUNT).forEach((pin, gpio) => {
      pin.addListener(() => this.refreshLevel(gpio));
      this.refreshLevel(gpio);
    });
    for (const [channel, millivolts] of this.adcMillivolts) this.applyAdc(channel, millivolts);
    this.halted = startFromFlash(this.mcu);
    if (this.halted) this.events.halted(this.halted);
  }

  /**
   * Runs the core up to the board time `untilNanos`, or for `maxInstructions`, whichever comes
   * first. While the core sleeps (WFI) time jumps to the next alarm, never past `untilNanos`.
   */
  runUntil(untilNanos: number, maxInstructions: number): void {
    const { clock } = this.simulator;
    const until = untilNanos - this.earlierNanos;
    if (this.halted) {
      if (until > clock.nanos) clock.tick(until - clock.nanos);
      return;
    }
    for (let executed = 0; clock.nanos < until && executed < maxInstructions; executed++) {
      stepCore(this.simulator, until);
    }
  }

  /** The board time at which the core next has something to do: now while it runs, its next alarm while it sleeps (WFI). */
  get nextAlarmNanos(): number {
    if (this.halted) return Infinity;
    if (!this.mcu.core.waiting) return this.nanos;
    const toAlarm = this.simulator.clock.nanosToNextAlarm;
    return toAlarm > 0 ? this.nanos + toAlarm : Infinity;
  }

  /** UART0's rate from the divisors the firmware set (0 before it set them). */
  get uartBaud(): number {
    const uart = this.mcu.uart[0]!;
    return uart.enabled && uart.baudDivider > 0 ? Math.round(uart.baudRate) : 0;
  }

  /**
   * Hands UART0 one byte from the host; false while its receive FIFO is full (try again later).
   * A receiver that is off loses the byte, as on a real line.
   */
  receiveByte(byte: number): boolean {
    const uart = this.mcu.uart[0]!;
    if (this.halted || !uart.enabled || !uart.rxEnabled) return true;
    if (uart.flags & UART_RX_FIFO_FULL) return false;
    uart.feedByte(byte);
    return true;
  }

  /** A pin's level: what the firmware drives, else what we drive, else its pull. */
  readPin(gpio: number): PinLevel {
    const pin = this.mcu.gpio[gpio]!;
    if (pin.outputEnable) return pin.outputValue ? 1 : 0;
    return this.drivenInputs.get(gpio) ?? (pin.pullupEnabled && !pin.pulldownEnabled ? 1 : 0);
  }

  /** Drives an input from outside, like a button to GND or 3.3 V; kept over resets. */
  setInput(gpio: number, level: PinLevel): void {
    this.drivenInputs.set(gpio, level);
    this.refreshLevel(gpio);
  }

  /** Puts a voltage on ADC channel `channel` (GP26 + channel); kept over resets. */
  setAdcMillivolts(channel: number, millivolts: number): void {
    this.adcMillivolts.set(channel, millivolts);
    this.applyAdc(channel, millivolts);
  }

  private applyAdc(channel: number, millivolts: number): void {
    this.mcu.adc.channelValues[channel] = Math.round((millivolts / PICO_ADC_REFERENCE_MV) * ADC_FULL_SCALE);
  }

  /**
   * Hands the pin's level to its pad input, as the silicon does: SIO's GPIO_IN reads back what an
   * output drives (rp2040js alone would read only what we drive from outside).
   */
  private refreshLevel(gpio: number): void {
    const level = this.readPin(gpio);
    if (this.padInputs.get(gpio) !== level) {
      // Only on a change: each call also latches an edge for GPIO interrupts.
      this.padInputs.set(gpio, level);
      this.mcu.gpio[gpio]!.setInputValue(level === 1);
    }
    if (this.levels.get(gpio) === level) return;
    this.levels.set(gpio, level);
    this.events.pin(gpio, level);
  }
}
