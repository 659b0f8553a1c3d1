import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedDevice } from '../../protocol/api/devices.ts';
import type { CreatedWebhook, WebhookDelivery, WebhookPayload } from '../../protocol/api/webhooks.ts';
import { AgentUnderTest } from '../support/agent-fleet.ts';
import { launchChromium } from '../support/chromium.ts';
import { layoutProblems } from '../support/page-layout.ts';
import { secretFile } from '../support/agent-process.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { databaseBackends, freePort } from '../support/databases.ts';
import { announceDevice, connectDevice } from '../support/mqtt-device.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { type ServerProcess, startServerProcess } from '../support/server-process.ts';
import { eventually } from '../support/test-server.ts';

const BOARD = 'rpi-4b';
const SCREENSHOTS = fileURLToPath(new URL('../../test-results/dashboard/', import.meta.url));

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  payload: WebhookPayload;
  receivedAt: number;
}

/**
 * An HTTP receiver the test runs: answers 204, 503, or never (`hang`); it can stop listening and
 * listen again on the same port.
 */
class TestReceiver {
  readonly received: Received[] = [];
  mode: 'ok' | 'unavailable' | 'hang' = 'ok';
  /** Requests it holds open in `hang` mode. */
  open = 0;
  private server: Server | null = null;
  port = 0;

  async listen(port = 0): Promise<string> {
    const server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      request.on('end', () => {
        this.received.push({
          headers: request.headers,
          body,
          payload: JSON.parse(body) as WebhookPayload,
          receivedAt: Date.now(),
        });
        if (this.mode === 'hang') {
          this.open++;
          response.on('close', () => this.open--);
          return;
        }
        response.writeHead(this.mode === 'ok' ? 204 : 503).end();
      });
    });
    server.on('error', () => undefined);
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return `http://127.0.0.1:${this.port}/hook`;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  of(type: string): Received[] {
    return this.received.filter((request) => request.payload.type === type);
  }

  async waitFor(type: string, match: (payload: WebhookPayload) => boolean = () => true, timeoutMs = 30_000) {
    return eventually(
      `a ${type} delivery`,
      () => this.of(type).find((request) => match(request.payload)),
      timeoutMs,
    ).catch((error: unknown) => {
      throw new Error(
        `${(error as Error).message}; got ${this.received.map((r) => r.payload.type).join(', ')}`,
      );
    });
  }
}

/** The signature check a receiver makes: HMAC-SHA-256 of the raw body under the secret. */
const signatureValid = (request: Received, secret: string) =>
  request.headers['x-boardfleet-signature'] ===
  `sha256=${createHmac('sha256', secret).update(request.body).digest('hex')}`;

describe.each(databaseBackends)('webhooks, end to end, on $name', (backend) => {
  let server: ServerProcess;
  let cli: CliRunner;
  let provisioningToken: string;
  const receivers: TestReceiver[] = [];
  const agents: AgentUnderTest[] = [];
  const devices: MqttClient[] = [];

  const receiver = () => {
    const created = new TestReceiver();
    receivers.push(created);
    return created;
  };

  const addWebhook = async (url: string, events: string): Promise<CreatedWebhook> =>
    JSON.parse((await cli.ok('webhooks', 'add', url, '--events', events, '--json')).stdout) as CreatedWebhook;

  const deliveries = async (webhookId: string): Promise<WebhookDelivery[]> =>
    JSON.parse((await cli.ok('webhooks', 'deliveries', webhookId, '--json')).stdout) as WebhookDelivery[];

  /** A device created through the API and connected by hand (a device double): presence on demand. */
  const connectDeviceDouble = async (name: string) => {
    const { body } = await server.api<CreatedDevice>('POST', '/api/v1/devices', { name, board: BOARD });
    const client = await connectDevice(`mqtt://127.0.0.1:${server.mqttPort}`, {
      clientId: body.device.id,
      username: body.device.id,
      password: body.secret,
    });
    client.on('error', () => undefined);
    devices.push(client);
    await announceDevice(client, body.device.id);
    return { deviceId: body.device.id, client };
  };

  beforeAll(async () => {
    server = await startServerProcess(backend, { env: { BOARDFLEET_WEBHOOK_RETRY_SECONDS: '1' } });
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
    provisioningToken = (
      await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'webhooks' })
    ).body.token;
  });

  afterAll(async () => {
    await Promise.all(devices.map((client) => client.endAsync(true).catch(() => undefined)));
    await Promise.all(agents.map((agent) => agent.dispose()));
    await Promise.all(receivers.map((each) => each.close()));
    await server?.dispose();
  });

  it('refuses a URL that is not http(s) and an unknown event, with the valid ones named', async () => {
    const ftp = await cli.failing(
      'webhooks',
      'add',
      'ftp://files.example.com/in',
      '--events',
      'device.online',
    );
    expect(ftp.stderr).toContain('webhook URLs must be http:// or https:// (got ftp://files.example.com/in)');
    const unknown = await cli.failing(
      'webhooks',
      'add',
      'https://example.com/',
      '--events',
      'device.exploded',
    );
    expect(unknown.stderr).toContain(
      'unknown webhook event device.exploded: use device.online, device.offline',
    );
    const viewer = (
      await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', { name: 'v', role: 'viewer' })
    ).body.token;
    const asViewer = cliRunner({ url: server.httpUrl, token: viewer });
    expect((await asViewer.failing('webhooks', 'list')).stderr).toMatch(/admin/);
  });

  it('delivers presence and rollout events of a real agent, signed, while a hanging receiver holds its requests', async () => {
    const good = receiver();
    const hanging = receiver();
    const everything =
      'device.online,device.offline,device.health-problem,rollout.created,rollout.paused,rollout.completed,rollout.aborted,wave.tripped,deployment.failed';
    const webhook = await addWebhook(await good.listen(), everything);
    expect(webhook.secret).toMatch(/^bfw_/);
    hanging.mode = 'hang';
    await addWebhook(await hanging.listen(), everything);
    const listed = (await cli.ok('webhooks', 'list')).stdout;
    expect(listed).toContain(webhook.id);
    expect(listed).not.toContain(webhook.secret);

    const agent = new AgentUnderTest('hooked', [
      ...['--server', server.httpUrl, '--provisioning-token-file', secretFile(provisioningToken)],
      ...['--board', BOARD, '--tag', 'hooked', '--heartbeat', '1', '--keepalive', '5'],
    ]).start();
    agents.push(agent);
    const online = await good.waitFor('device.online');
    const deviceId = agent.deviceId;
    expect(online.payload.data).toMatchObject({ deviceId, reason: 'started' });
    expect(signatureValid(online, webhook.secret)).toBe(true);
    expect(online.headers['x-boardfleet-event']).toBe('device.online');
    expect(signatureValid({ ...online, body: `${online.body} ` }, webhook.secret)).toBe(false);
    await eventually('the hanging receiver holds requests', () => hanging.open > 0);

    // A healthy release: created, then completed, with the hanging receiver still holding requests.
    const healthy = await releaseAppBundle(server, BOARD, { name: 'hooked-app', version: '1.0.0' });
    const createdAt = Date.now();
    const rollout = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: healthy.release,
      target: { tags: ['hooked'] },
      waves: [{ soakSeconds: 1 }],
    });
    expect(rollout.status).toBe(201);
    const completed = await eventually(
      'the rollout completed',
      async () => {
        const status = (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${rollout.body.id}`)).body;
        return status.state === 'completed' ? Date.now() : undefined;
      },
      60_000,
    );
    expect(hanging.open).toBeGreaterThan(0);
    console.log(
      `rollout completed ${completed - createdAt} ms after it was created, the hanging receiver holding ${hanging.open} request(s)`,
    );
    await good.waitFor('rollout.created', (payload) => payload.data.rolloutId === rollout.body.id);
    const done = await good.waitFor(
      'rollout.completed',
      (payload) => payload.data.rolloutId === rollout.body.id,
    );
    expect(done.payload.data).toMatchObject({ releaseId: expect.any(String) });
    expect(signatureValid(done, webhook.secret)).toBe(true);

    // An unhealthy one: the device fails its health check and rolls back, the wave trips, the rollout pauses.
    const unhealthy = await releaseAppBundle(server, BOARD, {
      name: 'hooked-app',
      version: '2.0.0',
      unhealthy: true,
    });
    const failing = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: unhealthy.release,
      target: { tags: ['hooked'] },
      waves: [{ soakSeconds: 1, errorThresholdPercent: 0 }],
    });
    expect(failing.status).toBe(201);
    const forFailing = (payload: WebhookPayload) => payload.data.rolloutId === failing.body.id;
    const failed = await good.waitFor('deployment.failed', forFailing, 90_000);
    expect(failed.payload.data).toMatchObject({
      deviceId,
      rolloutId: failing.body.id,
      reason: expect.any(String),
    });
    const tripped = await good.waitFor('wave.tripped', forFailing);
    expect(tripped.payload.data).toMatchObject({ waveIndex: 0, reason: expect.stringContaining('tripped') });
    await good.waitFor('rollout.paused', forFailing);

    await agent.stop();
    const offline = await good.waitFor('device.offline');
    expect(offline.payload.data).toMatchObject({ deviceId, reason: 'shutdown' });
    // Time from the event (the server's clock when ingest stored the change) to the receiver.
    console.log(
      `device.offline arrived ${offline.receivedAt - offline.payload.at} ms after the change was stored; deliveries of presence events: ${good
        .of('device.online')
        .concat(good.of('device.offline'))
        .map((request) => request.receivedAt - request.payload.at)
        .join(', ')} ms`,
    );

    // Each event went to the good receiver once, under one delivery id per event.
    const deliveryIds = good.received.map((request) => request.headers['x-boardfleet-delivery']);
    expect(new Set(deliveryIds).size).toBe(deliveryIds.length);
    const table = (await cli.ok('webhooks', 'deliveries', webhook.id)).stdout;
    expect(table).toMatch(/TIME\s+EVENT\s+STATUS\s+ATTEMPTS\s+LAST/);
    expect(table).toMatch(/device\.offline\s+delivered\s+1\s+204/);
    console.log(table);
  });

  it('records each failed attempt while the receiver is down, and delivers once it is back, across a server restart', async () => {
    const flaky = receiver();
    const port = await freePort();
    // Registered while nothing listens there: the first attempts are refused connections.
    const webhook = await addWebhook(`http://127.0.0.1:${port}/hook`, 'device.online');
    const { deviceId } = await connectDeviceDouble('flaky-target');
    const pendingWithAttempts = async (count: number) =>
      eventually(
        `${count} failed attempt(s) recorded`,
        async () => {
          const [delivery] = await deliveries(webhook.id);
          return delivery && delivery.attempts.length >= count ? delivery : undefined;
        },
        30_000,
      );
    const refused = await pendingWithAttempts(1);
    expect(refused.status).toBe('pending');
    expect(refused.attempts[0]).toMatchObject({
      statusCode: null,
      error: expect.stringMatching(/ECONNREFUSED/),
    });

    // Up, but answering 503.
    flaky.mode = 'unavailable';
    await flaky.listen(port);
    const unavailable = await eventually('a 503 attempt recorded', async () => {
      const [delivery] = await deliveries(webhook.id);
      return delivery?.attempts.some((attempt) => attempt.statusCode === 503) ? delivery : undefined;
    });
    expect(unavailable.status).toBe('pending');

    // The server stops with the delivery still pending; the receiver recovers meanwhile.
    await server.kill('SIGTERM');
    flaky.mode = 'ok';
    await server.start();
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken });

    const delivered = await eventually(
      'delivered after the restart',
      async () => {
        const [delivery] = await deliveries(webhook.id);
        return delivery?.status === 'delivered' ? delivery : undefined;
      },
      60_000,
    );
    const codes = delivered.attempts.map((attempt) => attempt.statusCode);
    expect(codes[0]).toBeNull();
    expect(codes).toContain(503);
    expect(codes.at(-1)).toBe(204);
    const success = flaky.received.at(-1) as Received;
    expect(success.payload.data).toMatchObject({ deviceId });
    expect(signatureValid(success, webhook.secret)).toBe(true);
    // Every retry carried the same delivery id and the same signed bytes.
    expect(new Set(flaky.received.map((request) => request.headers['x-boardfleet-delivery']))).toEqual(
      new Set([delivered.id]),
    );
    expect(new Set(flaky.received.map((request) => request.body)).size).toBe(1);
    console.log((await cli.ok('webhooks', 'deliveries', webhook.id)).stdout);

    await cli.ok('webhooks', 'remove', webhook.id);
    expect((await cli.ok('webhooks', 'list')).stdout).not.toContain(webhook.id);
    expect((await cli.failing('webhooks', 'deliveries', webhook.id)).stderr).toContain('not found');
  });
  it('lets an admin add a webhook in the dashboard, see its secret once, its deliveries, and remove it', async () => {
    const target = receiver();
    const url = await target.listen();
    mkdirSync(SCREENSHOTS, { recursive: true });
    const browser = await launchChromium();
    try {
      const page = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
      await page.goto(server.httpUrl);
      await page.getByLabel('Operator token').fill(server.adminToken);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByTestId('fleet-summary').waitFor();
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Webhooks' }).click();

      const form = page.getByRole('form', { name: 'Add a webhook' });
      await form.getByLabel('URL').fill('ftp://files.example.com/in');
      await form.getByLabel('device.online').check();
      // The browser's own check refuses no scheme it knows; the server's message is shown.
      await form.getByRole('button', { name: 'Add webhook' }).click();
      await expect
        .poll(() => form.getByRole('alert').textContent())
        .toContain('webhook URLs must be http:// or https://');
      await form.getByLabel('URL').fill(url);
      await form.getByRole('button', { name: 'Add webhook' }).click();
      const secret = (await page.getByTestId('webhook-secret').locator('pre').textContent()) ?? '';
      expect(secret).toMatch(/^bfw_/);
      const row = page.getByTestId('webhook-row').filter({ hasText: url });
      await row.waitFor();
      expect(await page.getByTestId('webhook-row').allTextContents()).not.toContain(secret);

      const { deviceId } = await connectDeviceDouble('dashboard-hooked');
      const arrived = await target.waitFor('device.online', (payload) => payload.data.deviceId === deviceId);
      expect(signatureValid(arrived, secret)).toBe(true);
      await row.getByRole('button', { name: 'Deliveries' }).click();
      const delivery = page.getByTestId('delivery-row').filter({ hasText: 'device.online' });
      await expect.poll(() => delivery.getAttribute('data-status')).toBe('delivered');
      expect(await delivery.textContent()).toContain('204');
      await page.screenshot({ path: `${SCREENSHOTS}webhooks-390px.png`, fullPage: true });
      expect(await layoutProblems(page), 'webhooks at 390 px').toEqual([]);

      page.once('dialog', (dialog) => void dialog.accept());
      await row.getByRole('button', { name: 'Remove' }).click();
      await row.waitFor({ state: 'detached' });
      expect((await cli.ok('webhooks', 'list')).stdout).not.toContain(url);
    } finally {
      await browser.close();
    }
  });
});
