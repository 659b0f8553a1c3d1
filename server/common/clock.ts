/** The clock is a dependency so services can be tested at chosen times. */
export interface Clock {
  now(): number;
}

export const CLOCK = Symbol('CLOCK');
export const systemClock: Clock = { now: () => Date.now() };
