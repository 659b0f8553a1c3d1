import type { PeerCertificate } from 'node:tls';

/** What a device's connection proves by its client certificate. */
export type DeviceCertificateCheck =
  { accepted: true; serialNumber: string } | { accepted: false; problem: string };

/** The part of a TLSSocket the check reads; a plain TCP socket has none of it. */
interface TlsConnection {
  authorized: boolean;
  authorizationError?: Error | string;
  getPeerCertificate(): PeerCertificate | Record<string, never> | null;
}

function isTlsConnection(connection: unknown): connection is TlsConnection {
  return typeof (connection as Partial<TlsConnection> | null)?.getPeerCertificate === 'function';
}

/**
 * Whether a connection proves by certificate that it is device `deviceId`: it came over TLS, its
 * client certificate chains to the CA the listener trusts and is valid now for client
 * authentication (Node checked that in the handshake: `authorized`), and it names the device
 * (subject CN = the client id). Otherwise, why not, in words for the log.
 */
export function checkDeviceCertificate(connection: unknown, deviceId: string): DeviceCertificateCheck {
  if (!isTlsConnection(connection))
    return { accepted: false, problem: 'device certificates are required: connect over MQTT over TLS' };
  const certificate = connection.getPeerCertificate();
  if (!certificate || !('subject' in certificate))
    return { accepted: false, problem: 'no client certificate presented' };
  if (!connection.authorized)
    return {
      accepted: false,
      problem: `the client certificate is not one of this fleet's valid device certificates (${String(connection.authorizationError)})`,
    };
  const names = [certificate.subject?.CN ?? []].flat();
  if (names.length !== 1 || names[0] !== deviceId)
    return {
      accepted: false,
      problem: `the client certificate is for ${names.join(', ') || 'no device'}, not ${deviceId}`,
    };
  return { accepted: true, serialNumber: certificate.serialNumber };
}
