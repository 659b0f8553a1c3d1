/**
 * How far ahead of the server's clock a device's own timestamp (`at` of a heartbeat or an
 * event) may be. Documented in protocol/PROTOCOL.md.
 */
export const MAX_DEVICE_CLOCK_AHEAD_MS = 5 * 60 * 1000;

/**
 * The time to store for what a device stamped `deviceAt` and the server received at
 * `receivedAt`. A later time is clamped, so a wrong or hostile clock cannot make a sample the
 * "latest" for ever. An earlier one is kept: events wait in the device's outbox while it is
 * offline and arrive late with their true time. Retention counts from `receivedAt` regardless.
 */
export function storedDeviceTime(deviceAt: number, receivedAt: number): number {
  return Math.min(deviceAt, receivedAt + MAX_DEVICE_CLOCK_AHEAD_MS);
}
