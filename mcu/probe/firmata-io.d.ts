// The parts of firmata-io (which ships no types) that Boardfleet uses.
declare module 'firmata-io' {
  import type { EventEmitter } from 'node:events';

  /** Anything serial-port-like: emits 'open', 'data', 'close', 'error' and accepts writes. */
  export interface FirmataTransport extends EventEmitter {
    write(data: Buffer, callback?: (error?: Error | null) => void): unknown;
  }

  export interface FirmataPin {
    supportedModes: number[];
    analogChannel: number;
    mode?: number;
    value: number;
    report: number;
    /** Filled in by queryPinState. */
    state?: number;
  }

  export class Firmata extends EventEmitter {
    constructor(
      transport: FirmataTransport,
      options?: { reportVersionTimeout?: number; skipCapabilities?: boolean; samplingInterval?: number },
    );
    readonly isReady: boolean;
    readonly version: { major?: number; minor?: number };
    readonly firmware: { name?: string; version?: { major: number; minor: number } };
    readonly pins: FirmataPin[];
    readonly analogPins: number[];
    readonly MODES: Record<'INPUT' | 'OUTPUT' | 'ANALOG' | 'PWM' | 'SERVO' | 'PULLUP', number> &
      Record<string, number>;
    readonly transport: FirmataTransport;
    pinMode(pin: number, mode: number): void;
    digitalWrite(pin: number, value: 0 | 1): void;
    queryPinState(pin: number, callback: () => void): void;
    reportVersion(callback: () => void): void;
    queryFirmware(callback: () => void): void;
    reset(): void;
  }

  const bindTransport: ((transport: unknown) => typeof Firmata) & { Firmata: typeof Firmata };
  export default bindTransport;
}
