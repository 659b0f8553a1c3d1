import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevicePage } from '../../protocol/api/devices.ts';
import { splitProvisioningToken } from '../../protocol/api/provisioning.ts';
import {
  BOARDFLEET_ENV_FILE,
  MOSQUITTO_CONF_FILE,
  MOSQUITTO_ENVIRONMENT,
} from '../../server/broker/mosquitto/mosquitto-config.ts';
import { certificateRequest, deviceKey } from '../../device-agent/lib/device-certificate.ts';
import { certificateFingerprint } from '../../server/tls/fleet-certificates.ts';
import { secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { parseEnvFile } from '../support/broker-modes.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { freePort, sqliteBackend } from '../support/databases.ts';
import { type MosquittoBroker, startMosquittoFromConfig } from '../support/mosquitto.ts';
import { connectionRefusal } from '../support/mqtt-device.ts';
import { revokeAndSeeStopped } from '../support/revocation.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const SLOW = 90_000;

/** sha256 of the certificate a TLS listener on this machine presents (checked by nothing: we only look). */
async function presentedFingerprint(port: number): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  try {
    await once(socket, 'secureConnect');
    const certificate: PeerCertificate = socket.getPeerCertificate();
    return certificateFingerprint(
      `-----BEGIN CERTIFICATE-----\n${certificate.raw.toString('base64')}\n-----END CERTIFICATE-----\n`,
    );
  } finally {
    socket.destroy();
  }
}

const leafOf = (chainPem: string) =>
  chainPem.slice(0, chainPem.indexOf('-----END CERTIFICATE-----') + '-----END CERTIFICATE-----'.length);

/**
 * `boardfleet broker-config mosquitto` as the README runs it, into a new folder with the server's
 * data folder beside the broker's, and free ports; what it printed and the variables it wrote.
 */
async function brokerConfigured(prefix: string, options: string[] = []) {
  const workDir = mkdtempSync(join(tmpdir(), prefix));
  const dataDir = join(workDir, 'data');
  const brokerDir = join(workDir, 'broker');
  const tlsPort = await freePort();
  const { stdout } = await cliRunner({ cwd: workDir }).ok(
    ...['broker-config', 'mosquitto', '--out', brokerDir, '--port', String(await freePort())],
    ...['--tls-port', String(tlsPort), '--data-dir', dataDir, ...options],
  );
  const env = parseEnvFile(readFileSync(join(brokerDir, BOARDFLEET_ENV_FILE), 'utf8'));
  return { workDir, dataDir, brokerDir, tlsPort, stdout, env };
}

/** The server, then Mosquitto, then their folder: what a describe block started, whatever got started. */
async function stopAll(server?: TestServer, mosquitto?: MosquittoBroker, workDir?: string): Promise<void> {
  await server?.dispose();
  await mosquitto?.stop();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
}

/**
 * Issue 16 item 2 on Mosquitto: `broker-config` writes a TLS listener with the server certificate
 * (made with a new fleet CA when the server has not run yet), the server takes that CA, tells
 * agents the TLS port, and has Mosquitto read the certificate again when it issues a new one.
 */
describe('Mosquitto over TLS with the fleet certificate, as broker-config sets it up', () => {
  let workDir: string;
  let dataDir: string;
  let brokerDir: string;
  let tlsPort: number;
  let caFingerprintBefore: string;
  let presentedBefore: string;
  let writtenByBrokerConfig: string;
  let mosquitto: MosquittoBroker;
  let server: TestServer;

  beforeAll(async () => {
    // The default names (this host's too): the test server covers fewer, so it issues its own.
    const configured = await brokerConfigured('boardfleet-mosquitto-tls-');
    ({ workDir, dataDir, brokerDir, tlsPort } = configured);
    const { stdout, env } = configured;
    expect(stdout).toContain(`Devices connect to Mosquitto over TLS on port ${tlsPort}`);
    expect(stdout).toContain('it now holds a new fleet CA (ca.pem, ca.key)');
    caFingerprintBefore = certificateFingerprint(readFileSync(join(dataDir, 'tls', 'ca.pem'), 'utf8'));
    writtenByBrokerConfig = certificateFingerprint(
      leafOf(readFileSync(join(dataDir, 'tls', 'server.pem'), 'utf8')),
    );
    mosquitto = await startMosquittoFromConfig(join(brokerDir, MOSQUITTO_CONF_FILE));
    presentedBefore = await presentedFingerprint(tlsPort);
    expect(env[MOSQUITTO_ENVIRONMENT.tlsPort]).toBe(String(tlsPort));
    server = await startTestServer(sqliteBackend, { ...env, BOARDFLEET_DATA_DIR: dataDir });
  }, SLOW);

  afterAll(() => stopAll(server, mosquitto, workDir));

  it('binds the plain listener to this machine only, and presents the certificate it wrote over TLS', () => {
    const conf = readFileSync(join(brokerDir, MOSQUITTO_CONF_FILE), 'utf8');
    expect(conf).toMatch(/^listener \d+ 127\.0\.0\.1$/m);
    expect(conf).toMatch(new RegExp(`^listener ${tlsPort}\\ncertfile ${dataDir}/tls/server\\.pem$`, 'm'));
    expect(presentedBefore).toBe(writtenByBrokerConfig);
  });

  it('keeps the fleet CA broker-config made, and has Mosquitto present the certificate the server issued', async () => {
    expect(server.caPem).toBe(readFileSync(join(dataDir, 'tls', 'ca.pem'), 'utf8'));
    expect(certificateFingerprint(server.caPem)).toBe(caFingerprintBefore);
    const issued = certificateFingerprint(leafOf(readFileSync(join(dataDir, 'tls', 'server.pem'), 'utf8')));
    expect(issued).not.toBe(presentedBefore);
    // The server sent SIGHUP through the pid file; Mosquitto reads the certificate again.
    await eventually(
      'Mosquitto presenting the new certificate',
      async () => (await presentedFingerprint(tlsPort)) === issued,
    );
  });

  it(
    'connects an agent provisioned over HTTPS to Mosquitto over TLS, verified against the pinned CA',
    async () => {
      const { token } = (
        await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'mosquitto-tls' })
      ).body;
      expect(splitProvisioningToken(token).caFingerprint).toBe(caFingerprintBefore);
      const agentDir = join(workDir, 'agent');
      const agent = startAgentProcess([
        ...['--server', `https://127.0.0.1:${server.httpsPort}`],
        ...['--provisioning-token-file', secretFile(token), '--name', 'tls-pi', '--data-dir', agentDir],
      ]);
      try {
        await eventually(
          'the agent online through Mosquitto',
          async () =>
            (await server.api<DevicePage>('GET', '/api/v1/devices?limit=10')).body.devices.find(
              (device) => device.name === 'tls-pi' && device.online,
            ),
          SLOW,
        );
        const credentials = JSON.parse(readFileSync(join(agentDir, 'credentials.json'), 'utf8')) as {
          mqttUrl: string;
        };
        expect(credentials.mqttUrl).toBe(`mqtts://127.0.0.1:${tlsPort}`);
        expect(mosquitto.output()).toMatch(
          new RegExp(`New connection from 127\\.0\\.0\\.1:\\d+ on port ${tlsPort}`),
        );
      } finally {
        await stopProcess(agent, 'SIGTERM');
      }
    },
    SLOW,
  );
});

/**
 * Issue 16 item 4 on Mosquitto: with `--device-certificates required` its TLS listener takes only
 * clients with a certificate of the fleet CA, agents get theirs at provisioning, and revoking a
 * device (its Mosquitto client deleted) stops it within seconds although its certificate is valid.
 */
describe('device certificates (mTLS) on Mosquitto, as broker-config --device-certificates required sets it up', () => {
  let workDir: string;
  let tlsPort: number;
  let mosquitto: MosquittoBroker;
  let server: TestServer;
  const mqttsUrl = () => `mqtts://127.0.0.1:${tlsPort}`;

  beforeAll(async () => {
    const configured = await brokerConfigured('boardfleet-mosquitto-mtls-', [
      ...['--device-certificates', 'required'],
    ]);
    const { brokerDir, dataDir, env } = configured;
    ({ workDir, tlsPort } = configured);
    mosquitto = await startMosquittoFromConfig(join(brokerDir, MOSQUITTO_CONF_FILE));
    expect(env[MOSQUITTO_ENVIRONMENT.deviceCertificates]).toBe('required');
    server = await startTestServer(sqliteBackend, { ...env, BOARDFLEET_DATA_DIR: dataDir });
  }, SLOW);

  afterAll(() => stopAll(server, mosquitto, workDir));

  it('refuses a device without a certificate of the fleet CA at the handshake, and lets it in with one', async () => {
    const created = await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
      name: 'mtls-probe',
    });
    const { id } = created.body.device;
    const asDevice = { clientId: id, username: id, password: created.body.secret, ca: server.caPem };
    expect(await connectionRefusal(mqttsUrl(), asDevice)).toMatch(/alert certificate required/);

    const key = deviceKey(join(workDir, 'probe-key'));
    const answer = await fetch(`${server.httpUrl}/api/v1/device-certificate`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${id}:${created.body.secret}`).toString('base64')}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ csr: await certificateRequest(key, id) }),
    });
    expect(answer.status).toBe(200);
    const { certificatePem } = (await answer.json()) as { certificatePem: string };
    expect(await connectionRefusal(mqttsUrl(), { ...asDevice, key, cert: certificatePem })).toBeNull();
  });

  it(
    'provisions an agent with a certificate, online through Mosquitto, and stops it within seconds once revoked',
    async () => {
      const { token } = (
        await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'mosquitto-mtls' })
      ).body;
      const agentDir = join(workDir, 'agent');
      const agent = startAgentProcess([
        ...['--server', `https://127.0.0.1:${server.httpsPort}`],
        ...['--provisioning-token-file', secretFile(token), '--name', 'mtls-pi', '--data-dir', agentDir],
      ]);
      try {
        const device = await eventually(
          'the agent online through Mosquitto',
          async () => {
            const found = (await server.api<DevicePage>('GET', '/api/v1/devices?limit=10')).body.devices.find(
              (candidate) => candidate.name === 'mtls-pi',
            );
            return found?.online && found;
          },
          SLOW,
        );
        expect(readFileSync(join(agentDir, 'device.pem'), 'utf8')).toContain('BEGIN CERTIFICATE');
        await revokeAndSeeStopped(server, device.id, agent, /Connection refused/);
      } finally {
        await stopProcess(agent, 'SIGTERM');
      }
    },
    SLOW,
  );
});
