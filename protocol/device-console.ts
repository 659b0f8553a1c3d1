/**
 * Console capture of a device's VMs: the agent uploads the tail of each VM's console per artifact
 * version, the server keeps the latest upload, operators read it back. Shared by both sides so the
 * agent never sends more than the server keeps.
 */

/** The server keeps at most this many bytes of a console (the tail); the agent sends no more. */
export const CONSOLE_MAX_BYTES = 256 * 1024;

/** Where a device's console of one artifact version lives (PUT by the device, GET by operators). */
export function consolePath(deviceId: string, artifact: string, version: string): string {
  return `/api/v1/devices/${encodeURIComponent(deviceId)}/consoles/${encodeURIComponent(artifact)}/${encodeURIComponent(version)}`;
}
