import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WEBHOOK_MAX_ATTEMPTS } from '../../protocol/api/webhooks.ts';
import { sqliteBackend } from '../../test/support/databases.ts';
import { eventually } from '../../test/support/test-server.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { attemptOutcome, retryDelayMs, WebhookDispatcher, webhookSignature } from './webhook-dispatcher.ts';
import { WebhookRepository } from './webhook.repository.ts';

describe('webhook signatures and retries', () => {
  it('signs the raw body with HMAC-SHA-256 under the secret, hex', () => {
    // RFC 4231-style known answer, computed independently of the code under test.
    expect(webhookSignature('key', 'The quick brown fox jumps over the lazy dog')).toBe(
      'sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8',
    );
  });

  it.each([
    { attempt: 1, base: 10, delay: 10_000 },
    { attempt: 2, base: 10, delay: 20_000 },
    { attempt: 5, base: 10, delay: 160_000 },
    { attempt: 9, base: 10, delay: 2_560_000 },
    { attempt: 8, base: 60, delay: 3_600_000 },
    { attempt: 3, base: 0.5, delay: 2_000 },
  ])(
    'waits $delay ms after attempt $attempt fails (base $base s), at most an hour',
    ({ attempt, base, delay }) => {
      expect(retryDelayMs(attempt, base)).toBe(delay);
    },
  );

  it('retries until the last attempt, then gives up; a 2xx delivers', () => {
    expect(attemptOutcome(1, true, 50, 10)).toEqual({ status: 'delivered', finishedAt: 50 });
    expect(attemptOutcome(1, false, 50, 10)).toEqual({ status: 'pending', nextAttemptAt: 10_050 });
    expect(attemptOutcome(WEBHOOK_MAX_ATTEMPTS - 1, false, 0, 10)).toMatchObject({ status: 'pending' });
    expect(attemptOutcome(WEBHOOK_MAX_ATTEMPTS, false, 0, 10)).toEqual({ status: 'failed', finishedAt: 0 });
  });
});

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

describe('the webhook dispatcher, against a real receiver', () => {
  let db: Database;
  let drop: () => Promise<void>;
  let repository: WebhookRepository;
  let receiver: Server;
  let received: Received[];
  let answer: (response: ServerResponse) => void;
  let dispatcher: WebhookDispatcher | null;

  beforeEach(async () => {
    const created = await sqliteBackend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    await migrateToLatest(db);
    repository = new WebhookRepository(db);
    received = [];
    answer = (response) => response.writeHead(204).end();
    receiver = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      request.on('end', () => {
        received.push({ headers: request.headers, body });
        answer(response);
      });
    });
    receiver.on('error', () => undefined);
    receiver.listen(0, '127.0.0.1');
    await once(receiver, 'listening');
    const port = (receiver.address() as AddressInfo).port;
    await repository.create({
      id: 'wh-1',
      url: `http://127.0.0.1:${port}/hook`,
      events: ['device.offline'],
      secret: 'shh',
      createdAt: 0,
      createdBy: 'admin',
    });
    dispatcher = null;
  });

  afterEach(async () => {
    await dispatcher?.stop();
    receiver.closeAllConnections();
    receiver.close();
    await db.destroy();
    await drop();
  });

  const start = (timeoutMs = 10_000) => {
    dispatcher = new WebhookDispatcher({
      deliveries: repository,
      clock: { now: () => Date.now() },
      logger: pino({ level: 'silent' }),
      retryBaseSeconds: 0.2,
      timeoutMs,
    });
    dispatcher.start();
    return dispatcher;
  };

  const queue = (id: string, body = `{"id":"${id}"}`) =>
    repository.enqueue([
      {
        id,
        webhookId: 'wh-1',
        eventKey: id,
        eventId: id,
        type: 'device.offline',
        body,
        createdAt: Date.now(),
      },
    ]);

  const attemptsOf = async (id: string) =>
    (await repository.deliveries('wh-1', 10)).find((delivery) => delivery.id === id);

  it('POSTs the exact body with event, delivery and a signature the receiver can check', async () => {
    await queue('d-1', '{"id":"evt-1","type":"device.offline","data":{"deviceId":"dev-ü"}}');
    start();
    const [request] = await eventually('the receiver got the delivery', async () =>
      received.length > 0 ? received : undefined,
    );
    const expected = `sha256=${createHmac('sha256', 'shh')
      .update(request?.body ?? '')
      .digest('hex')}`;
    expect(request?.headers['x-boardfleet-signature']).toBe(expected);
    expect(request?.headers['x-boardfleet-event']).toBe('device.offline');
    expect(request?.headers['x-boardfleet-delivery']).toBe('d-1');
    expect(request?.headers['content-type']).toBe('application/json');
    expect(request?.body).toContain('dev-ü');
    const delivery = await eventually('the delivery is recorded delivered', async () => {
      const found = await attemptsOf('d-1');
      return found?.status === 'delivered' ? found : undefined;
    });
    expect(delivery.attempts).toEqual([expect.objectContaining({ statusCode: 204, error: null })]);
  });

  it('retries a 503 with backoff and records each attempt until one succeeds', async () => {
    let refusals = 2;
    answer = (response) => {
      if (refusals-- > 0) response.writeHead(503).end('busy');
      else response.writeHead(200).end('ok');
    };
    await queue('d-1');
    start();
    const delivery = await eventually('delivered on the third attempt', async () => {
      const found = await attemptsOf('d-1');
      return found?.status === 'delivered' ? found : undefined;
    });
    expect(delivery.attempts.map((attempt) => [attempt.statusCode, attempt.error])).toEqual([
      [503, 'HTTP 503 Service Unavailable'],
      [503, 'HTTP 503 Service Unavailable'],
      [200, null],
    ]);
    // Backoff: 0.2 s, then 0.4 s.
    const [first, second, third] = delivery.attempts.map((attempt) => attempt.at);
    expect((second ?? 0) - (first ?? 0)).toBeGreaterThanOrEqual(200);
    expect((third ?? 0) - (second ?? 0)).toBeGreaterThanOrEqual(400);
  });

  it('counts a receiver that does not answer in time as a failed attempt, and keeps sending others', async () => {
    answer = (response) => {
      if (received.length === 1) return; // the first request hangs
      response.writeHead(204).end();
    };
    await queue('d-hang');
    start(300);
    await eventually('the hanging request arrived', async () => (received.length > 0 ? true : undefined));
    await queue('d-next');
    dispatcher?.wake();
    await eventually('the next delivery went through meanwhile', async () =>
      (await attemptsOf('d-next'))?.status === 'delivered' ? true : undefined,
    );
    const hung = await eventually('the hanging attempt is recorded', async () => {
      const found = await attemptsOf('d-hang');
      return found && found.attempts.length > 0 ? found : undefined;
    });
    expect(hung.attempts[0]).toMatchObject({ statusCode: null, error: 'no answer within 0.3 s' });
  });

  it('records a refused connection and hands an interrupted send back on stop, without an attempt', async () => {
    const port = (receiver.address() as AddressInfo).port;
    receiver.close();
    receiver.closeAllConnections();
    await queue('d-1');
    start();
    const refused = await eventually('the refused attempt is recorded', async () => {
      const found = await attemptsOf('d-1');
      return found && found.attempts.length > 0 ? found : undefined;
    });
    expect(refused.attempts[0]?.error).toMatch(/ECONNREFUSED/);
    expect(refused.status).toBe('pending');

    // A receiver that hangs while the server stops: the claim is given back, no attempt counted.
    const hanging = createServer(() => undefined);
    let requested = false;
    hanging.on('request', () => (requested = true));
    hanging.on('error', () => undefined);
    hanging.listen(port, '127.0.0.1');
    await once(hanging, 'listening');
    try {
      await queue('d-2');
      dispatcher?.wake();
      await eventually('the send is under way', async () => (requested ? true : undefined));
      await dispatcher?.stop();
      dispatcher = null;
      const interrupted = await attemptsOf('d-2');
      expect(interrupted?.attempts).toEqual([]);
      expect((await repository.claimDue(Date.now(), 10, 1_000)).map((claimed) => claimed.id)).toContain(
        'd-2',
      );
    } finally {
      hanging.closeAllConnections();
      hanging.close();
    }
  });
});
