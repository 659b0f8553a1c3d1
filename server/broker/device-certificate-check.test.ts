import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import {
  createServer as createTcpServer,
  connect as connectTcp,
  type AddressInfo,
  type Socket,
} from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateRequest } from '../../device-agent/lib/device-certificate.ts';
import {
  createFleetCa,
  issueDeviceCertificate,
  issueServerCertificate,
  type PemPair,
  verifyCertificateRequest,
} from '../tls/fleet-certificates.ts';
import { checkDeviceCertificate, type DeviceCertificateCheck } from './device-certificate-check.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

const newKey = () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    format: 'pem',
    type: 'pkcs8',
  }) as string;

async function deviceCertificate(ca: PemPair, deviceId: string, keyPem: string, issuedAt = Date.now()) {
  const request = await verifyCertificateRequest(await certificateRequest(keyPem, deviceId));
  return issueDeviceCertificate(ca, deviceId, request, issuedAt);
}

/**
 * The broker's TLS listener as it runs when the fleet requires device certificates: client
 * certificates asked for, checked against the fleet CA, and not enforced in the handshake.
 */
describe('device certificate check', () => {
  let fleet: PemPair;
  let stranger: PemPair;
  let server: ReturnType<typeof createServer>;
  let port: number;

  beforeAll(async () => {
    fleet = await createFleetCa(Date.now());
    stranger = await createFleetCa(Date.now(), 'Somebody else');
    const serverCertificate = await issueServerCertificate(fleet, ['localhost'], Date.now());
    server = createServer({
      key: serverCertificate.keyPem,
      cert: serverCertificate.certPem,
      ca: fleet.certPem,
      requestCert: true,
      rejectUnauthorized: false,
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => {
    server.close();
  });

  /** Connects with `client` (key and certificate, or none) and checks the server's side as `deviceId`. */
  async function checkAs(
    deviceId: string,
    client: { key?: string; cert?: string },
  ): Promise<DeviceCertificateCheck> {
    const serverSide = once(server, 'secureConnection') as Promise<[TLSSocket]>;
    const socket = connect({
      port,
      host: '127.0.0.1',
      ca: fleet.certPem,
      servername: 'localhost',
      ...client,
    });
    const [connection] = await serverSide;
    socket.destroy();
    return checkDeviceCertificate(connection, deviceId);
  }

  it("accepts the device's own certificate of the fleet CA", async () => {
    const key = newKey();
    const check = await checkAs('dev-a', { key, cert: await deviceCertificate(fleet, 'dev-a', key) });
    expect(check).toEqual({ accepted: true, serialNumber: expect.stringMatching(/^[0-9A-F]+$/) });
  });

  it.each([
    ['no certificate', async () => ({}), 'no client certificate presented'],
    [
      "another device's certificate",
      async () => {
        const key = newKey();
        return { key, cert: await deviceCertificate(fleet, 'dev-b', key) };
      },
      'the client certificate is for dev-b, not dev-a',
    ],
    [
      "another CA's certificate",
      async () => {
        const key = newKey();
        return { key, cert: await deviceCertificate(stranger, 'dev-a', key) };
      },
      "the client certificate is not one of this fleet's valid device certificates",
    ],
    [
      'an expired certificate',
      async () => {
        const key = newKey();
        return { key, cert: await deviceCertificate(fleet, 'dev-a', key, Date.now() - 8 * DAY_MS) };
      },
      "the client certificate is not one of this fleet's valid device certificates",
    ],
    [
      "the fleet's server certificate (made for server authentication)",
      async () => {
        const server = await issueServerCertificate(fleet, ['dev-a'], Date.now());
        return { key: server.keyPem, cert: server.certPem };
      },
      "the client certificate is not one of this fleet's valid device certificates",
    ],
  ])('refuses %s', async (_what, client, problem) => {
    const check = await checkAs('dev-a', await client());
    expect(check.accepted).toBe(false);
    expect(check.accepted ? '' : check.problem).toContain(problem);
  });

  it('refuses a plain TCP connection: devices must come over TLS', async () => {
    const tcp = createTcpServer();
    tcp.listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    const serverSide = once(tcp, 'connection') as Promise<[Socket]>;
    const client = connectTcp((tcp.address() as AddressInfo).port, '127.0.0.1');
    const [socket] = await serverSide;
    expect(checkDeviceCertificate(socket, 'dev-a')).toEqual({
      accepted: false,
      problem: 'device certificates are required: connect over MQTT over TLS',
    });
    client.destroy();
    socket.destroy();
    tcp.close();
  });
});
