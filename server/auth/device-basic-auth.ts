import type { Request, Response } from 'express';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { DeviceAuthenticator } from '../broker/device-authenticator.ts';

/**
 * The device an HTTP request authenticates as with Basic credentials (device id and secret), or
 * null when it brings none or wrong ones. While the id or the caller's address must wait after
 * failed attempts, it throws `too-many-attempts` (429) and sets Retry-After.
 */
export async function authenticateDeviceRequest(
  authenticator: DeviceAuthenticator,
  request: Request,
  response: Response,
): Promise<string | null> {
  return (await authenticatedDeviceCredentials(authenticator, request, response))?.deviceId ?? null;
}

/**
 * As {@link authenticateDeviceRequest}, with the secret the device proved: the server keeps only
 * its hash, and a broker that holds credentials in its own store (Mosquitto) needs it in clear.
 */
export async function authenticatedDeviceCredentials(
  authenticator: DeviceAuthenticator,
  request: Request,
  response: Response,
): Promise<{ deviceId: string; secret: string } | null> {
  const basic = request.headers.authorization?.match(/^Basic\s+(\S+)$/i)?.[1];
  if (!basic) return null;
  const decoded = Buffer.from(basic, 'base64').toString();
  const separator = decoded.indexOf(':');
  if (separator <= 0) return null;
  const deviceId = decoded.slice(0, separator);
  const secret = decoded.slice(separator + 1);
  // Without a trusted proxy configured, request.ip is the socket's peer address.
  const source = request.ip ?? request.socket.remoteAddress ?? 'unknown';
  const result = await authenticator.check(deviceId, secret, source);
  if (result.accepted) return { deviceId, secret };
  if (result.retryAfterMs !== null) {
    const seconds = Math.ceil(result.retryAfterMs / 1000);
    response.setHeader('retry-after', String(seconds));
    throw new BoardfleetError(
      'too-many-attempts',
      `too many failed device authentications from this device id or address: try again in ${seconds} s`,
    );
  }
  return null;
}
