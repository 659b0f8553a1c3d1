// The parts of johnny-five (which ships no types) that Boardfleet uses.
declare module 'johnny-five' {
  import type { EventEmitter } from 'node:events';

  export class Board extends EventEmitter {
    constructor(options: {
      io: unknown;
      repl?: boolean;
      debug?: boolean;
      sigint?: boolean;
      timeout?: number;
    });
    readonly isReady: boolean;
    /** The IO plugin given to the constructor (firmata-io emits `digital-read-N` per report). */
    readonly io: EventEmitter;
  }

  /** Components attach to the most recently created Board unless given `board`. */
  interface ComponentOptions {
    pin: number | string;
    board?: Board;
  }

  export class Led {
    constructor(options: number | string | ComponentOptions);
    on(): this;
    off(): this;
    brightness(value: number): this;
  }

  export class Button extends EventEmitter {
    constructor(options: number | string | (ComponentOptions & { isPullup?: boolean; invert?: boolean }));
    readonly isDown: boolean;
  }

  export class Sensor extends EventEmitter {
    constructor(options: string | (ComponentOptions & { freq?: number; threshold?: number }));
    readonly value: number;
  }

  export class Servo {
    constructor(
      options: number | (ComponentOptions & { range?: [number, number]; pwmRange?: [number, number] }),
    );
    to(degrees: number): this;
  }

  const five: {
    Board: typeof Board;
    Led: typeof Led;
    Button: typeof Button;
    Sensor: typeof Sensor;
    Servo: typeof Servo;
  };
  export default five;
}
