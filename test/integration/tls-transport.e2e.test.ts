import { once } from 'node:events';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import mqtt from 'mqtt';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleetCa } from '../../server/tls/fleet-certificates.ts';
import { secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

describe('TLS by default: the fleet CA, HTTPS, MQTT over TLS and agents that pin the CA', () => {
  let server: TestServer;
  let pinnedToken: string;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    const created = await server.api<{ token: string; caFingerprint: string }>(
      'POST',
      '/api/v1/provisioning-tokens',
      { name: 'tls' },
    );
    pinnedToken = created.body.token;
  }, 60_000);
  afterAll(async () => server?.dispose());

  const httpsUrl = () => `https://127.0.0.1:${server.httpsPort}`;
  const devices = async () =>
    (
      await server.api<{ devices: Array<{ id: string; name: string; online: boolean }> }>(
        'GET',
        '/api/v1/devices?limit=1000',
      )
    ).body.devices;

  it('creates the fleet CA at first start: tls/ca.pem readable by all, its key only in the database', () => {
    const caPath = join(server.dataDir, 'tls', 'ca.pem');
    expect(readFileSync(caPath, 'utf8')).toBe(server.caPem);
    expect(statSync(caPath).mode & 0o777).toBe(0o644);
    expect(statSync(join(server.dataDir, 'tls', 'server.key')).mode & 0o777).toBe(0o600);
    expect(pinnedToken).toMatch(new RegExp(`^bfp_[A-Za-z0-9_-]+\\.${server.caFingerprint}$`));
  });

  it('serves the API over HTTPS with a certificate that chains to the fleet CA, and only to it', async () => {
    const trusting = new Agent({ connect: { ca: server.caPem } });
    const answer = await undiciFetch(`${httpsUrl()}/healthz`, { dispatcher: trusting });
    expect(answer.status).toBe(200);
    const stranger = await createFleetCa(Date.now(), 'Somebody else');
    const refused = await undiciFetch(`${httpsUrl()}/healthz`, {
      dispatcher: new Agent({ connect: { ca: stranger.certPem } }),
    }).catch((error: Error & { cause?: { code?: string } }) => error.cause?.code);
    expect(refused).toBe('SELF_SIGNED_CERT_IN_CHAIN');
  });

  it('takes MQTT over TLS with the same certificate and refuses a client that trusts another CA', async () => {
    const devicesList = await server.api<{ device: { id: string }; secret: string }>(
      'POST',
      '/api/v1/devices',
      {
        name: 'mqtts-probe',
      },
    );
    const { id } = devicesList.body.device;
    const client = mqtt.connect(`mqtts://127.0.0.1:${server.mqttsPort}`, {
      ca: server.caPem,
      clientId: id,
      username: id,
      password: devicesList.body.secret,
      reconnectPeriod: 0,
    });
    await new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    await client.endAsync();
    const socket = connect({
      host: '127.0.0.1',
      port: server.mqttsPort ?? 0,
      ca: (await createFleetCa(Date.now())).certPem,
    });
    const [error] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('SELF_SIGNED_CERT_IN_CHAIN');
  });

  it('provisions an agent over HTTPS with the pinned token: it keeps the CA and connects over MQTT over TLS', async () => {
    const dataDir = tempDir('boardfleet-tls-agent-');
    const agent = startAgentProcess([
      '--server',
      httpsUrl(),
      '--provisioning-token-file',
      secretFile(pinnedToken),
      '--name',
      'pinned-pi',
      '--data-dir',
      dataDir,
    ]);
    try {
      await eventually(
        'the pinned agent online',
        async () => (await devices()).find((device) => device.name === 'pinned-pi' && device.online),
        60_000,
      );
      expect(readFileSync(join(dataDir, 'fleet-ca.pem'), 'utf8')).toBe(server.caPem);
      const credentials = JSON.parse(readFileSync(join(dataDir, 'credentials.json'), 'utf8')) as {
        mqttUrl: string;
      };
      expect(credentials.mqttUrl).toBe(`mqtts://127.0.0.1:${server.mqttsPort}`);
    } finally {
      await stopProcess(agent, 'SIGTERM');
    }
  }, 90_000);

  it('refuses a server whose CA is not the one the token pins, saying so, and registers nothing', async () => {
    const before = (await devices()).length;
    const otherPin = pinnedToken.replace(/\.[0-9a-f]+$/, `.${'ab'.repeat(32)}`);
    const agent = startAgentProcess([
      '--server',
      httpsUrl(),
      '--provisioning-token-file',
      secretFile(otherPin),
      '--name',
      'misled-pi',
      '--data-dir',
      tempDir('boardfleet-tls-misled-'),
    ]);
    const [code] = (await once(agent, 'exit')) as [number];
    expect(code).not.toBe(0);
    expect(agent.output()).toContain('does not present the fleet CA the provisioning token pins');
    expect((await devices()).length).toBe(before);
  }, 60_000);

  it('refuses a server that does not chain to the CA given with --ca', async () => {
    const caFile = join(tempDir('boardfleet-tls-ca-'), 'other-ca.pem');
    writeFileSync(caFile, (await createFleetCa(Date.now(), 'Somebody else')).certPem);
    const token = pinnedToken.slice(0, pinnedToken.indexOf('.'));
    const agent = startAgentProcess([
      '--server',
      httpsUrl(),
      '--ca',
      caFile,
      '--provisioning-token-file',
      secretFile(token),
      '--name',
      'wrong-ca-pi',
      '--data-dir',
      tempDir('boardfleet-tls-wrong-ca-'),
    ]);
    const [code] = (await once(agent, 'exit')) as [number];
    expect(code).not.toBe(0);
    expect(agent.output()).toContain(`is not trusted`);
    expect(agent.output()).toContain(`only the fleet CA in ${caFile}`);
  }, 60_000);

  it('lets the CLI speak HTTPS, trusting the CA in the data dir or BOARDFLEET_CA, and no other', async () => {
    const trusting = cliRunner({ url: httpsUrl(), env: { BOARDFLEET_DATA_DIR: server.dataDir } });
    const listed = await trusting.ok('devices', 'list', '--json');
    expect(JSON.parse(listed.stdout)).toEqual(expect.any(Array));
    const caFile = join(tempDir('boardfleet-tls-cli-'), 'other-ca.pem');
    writeFileSync(caFile, (await createFleetCa(Date.now(), 'Somebody else')).certPem);
    const misled = cliRunner({ url: httpsUrl(), token: server.adminToken, env: { BOARDFLEET_CA: caFile } });
    const refused = await misled.failing('devices', 'list');
    expect(refused.stderr).toContain(`the server at ${httpsUrl()} is not trusted`);
  }, 60_000);
});
