import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../test/support/databases.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { type NewDelivery, type StoredWebhook, WebhookRepository } from './webhook.repository.ts';

const webhook = (id: string, createdAt = 1): StoredWebhook => ({
  id,
  url: `http://127.0.0.1:9/${id}`,
  events: ['device.offline', 'rollout.paused'],
  secret: `secret-${id}`,
  createdAt,
  createdBy: 'admin',
});

const delivery = (id: string, webhookId: string, eventKey: string, createdAt = 100): NewDelivery => ({
  id,
  webhookId,
  eventKey,
  eventId: `evt-${eventKey}`,
  type: 'device.offline',
  body: JSON.stringify({ id: `evt-${eventKey}` }),
  createdAt,
});

describe.each(databaseBackends)('the webhook repository, on $name', (backend) => {
  let db: Database;
  let drop: () => Promise<void>;
  let webhooks: WebhookRepository;

  beforeEach(async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    await migrateToLatest(db);
    webhooks = new WebhookRepository(db);
    await webhooks.create(webhook('wh-a'));
    await webhooks.create(webhook('wh-b', 2));
  });

  afterEach(async () => {
    await db.destroy();
    await drop();
  });

  it('queues an event once per webhook, however many replicas queue it', async () => {
    expect(
      await webhooks.enqueue([
        delivery('d-1', 'wh-a', 'device.offline:dev-1:5'),
        delivery('d-2', 'wh-b', 'device.offline:dev-1:5'),
      ]),
    ).toBe(2);
    // A second replica saw the same presence change: same keys, new delivery ids.
    expect(
      await webhooks.enqueue([
        delivery('d-3', 'wh-a', 'device.offline:dev-1:5'),
        delivery('d-4', 'wh-a', 'device.offline:dev-1:9'),
      ]),
    ).toBe(1);
    const ids = (await webhooks.deliveries('wh-a', 10)).map((row) => row.id).sort();
    expect(ids).toEqual(['d-1', 'd-4']);
  });

  it('lets only one of two claimers have a due delivery, and another claim it once the claim ran out', async () => {
    await webhooks.enqueue([
      delivery('d-1', 'wh-a', 'k1', 100),
      delivery('d-2', 'wh-a', 'k2', 100),
      delivery('d-3', 'wh-a', 'k3', 5_000),
    ]);
    const [first, second] = await Promise.all([
      webhooks.claimDue(1_000, 10, 60_000),
      webhooks.claimDue(1_000, 10, 60_000),
    ]);
    const claimedIds = [...first, ...second].map((claimed) => claimed.id).sort();
    // d-3 is not due yet; d-1 and d-2 went to one claimer each time, never to both.
    expect(claimedIds).toEqual(['d-1', 'd-2']);
    expect(first[0]?.secret ?? second[0]?.secret).toBe('secret-wh-a');
    expect(await webhooks.claimDue(2_000, 10, 60_000)).toEqual([]);
    // A replica that died holding them: past its claim they are due again (d-3 too by now).
    const reclaimed = await webhooks.claimDue(61_001, 10, 60_000);
    expect(reclaimed.map((claimed) => claimed.id).sort()).toEqual(['d-1', 'd-2', 'd-3']);
  });

  it('records attempts, retries when told, and lists deliveries newest first with their attempts', async () => {
    await webhooks.enqueue([delivery('d-1', 'wh-a', 'k1', 100), delivery('d-2', 'wh-a', 'k2', 200)]);
    const [claimed] = await webhooks.claimDue(1_000, 1, 60_000);
    expect(claimed?.id).toBe('d-1');
    await webhooks.recordAttempt(
      'd-1',
      { id: 'a-1', at: 1_000, statusCode: 503, error: 'HTTP 503', durationMs: 12 },
      { status: 'pending', nextAttemptAt: 11_000 },
    );
    // Released, but not due until its retry time.
    expect((await webhooks.claimDue(2_000, 10, 60_000)).map((row) => row.id)).toEqual(['d-2']);
    const [retry] = await webhooks.claimDue(11_000, 10, 60_000);
    expect(retry).toMatchObject({ id: 'd-1', attempts: 1 });
    await webhooks.recordAttempt(
      'd-1',
      { id: 'a-2', at: 11_000, statusCode: 204, error: null, durationMs: 3 },
      { status: 'delivered', finishedAt: 11_003 },
    );

    const [newest, oldest] = await webhooks.deliveries('wh-a', 10);
    expect(newest).toMatchObject({ id: 'd-2', status: 'pending', attempts: [] });
    expect(oldest).toMatchObject({
      id: 'd-1',
      status: 'delivered',
      nextAttemptAt: null,
      attempts: [
        { at: 1_000, statusCode: 503, error: 'HTTP 503', durationMs: 12 },
        { at: 11_000, statusCode: 204, error: null, durationMs: 3 },
      ],
    });
  });

  it('prunes finished deliveries only, and deletes a webhook with its queue', async () => {
    await webhooks.enqueue([
      delivery('d-1', 'wh-a', 'k1'),
      delivery('d-2', 'wh-a', 'k2'),
      delivery('d-3', 'wh-b', 'k1'),
    ]);
    await webhooks.claimDue(1_000, 1, 60_000);
    await webhooks.recordAttempt(
      'd-1',
      { id: 'a-1', at: 1_000, statusCode: 200, error: null, durationMs: 1 },
      { status: 'delivered', finishedAt: 1_000 },
    );
    expect(await webhooks.pruneFinished(500)).toBe(0);
    expect(await webhooks.pruneFinished(2_000)).toBe(1);
    expect((await webhooks.deliveries('wh-a', 10)).map((row) => row.id)).toEqual(['d-2']);

    expect(await webhooks.delete('wh-a')).toBe(true);
    expect(await webhooks.delete('wh-a')).toBe(false);
    expect((await webhooks.list()).map((row) => row.id)).toEqual(['wh-b']);
    expect(await db.selectFrom('webhook_deliveries').select('id').execute()).toEqual([{ id: 'd-3' }]);
    expect(await db.selectFrom('webhook_attempts').select('id').execute()).toEqual([]);
  });
});
