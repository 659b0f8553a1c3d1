import { EventEmitter } from 'node:events';
import { sql } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Database } from '../db/database.ts';
import { EnvelopeReader, encodeChanges } from './change-envelope.ts';

/** The one channel every replica listens on. */
export const CHANGE_CHANNEL = 'boardfleet_changes';
/** Changes published within this window go out together, in one statement. */
export const PUBLISH_WINDOW_MS = 25;
/** Changes waiting while a send is under way, at most; past this, new ones are dropped (and logged). */
const MAX_WAITING = 50_000;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10_000;

export interface ChangeFeedEvents {
  /** A change another replica published. */
  change: [change: unknown];
  /** Listening again after a lost connection: changes published meanwhile were missed. */
  resync: [];
}

/**
 * Changes one replica makes that the live views on the others must show (presence, rollout
 * progress, builds…). Best effort, like the live stream itself: a view that may have missed
 * changes is told to read its snapshots again (`resync`).
 */
export abstract class ChangeFeed extends EventEmitter<ChangeFeedEvents> {
  /**
   * Queues a change (any JSON value) for the other replicas. A change published with a `coalesce`
   * key replaces one with the same key still waiting: only the latest of those matters.
   */
  abstract publish(change: unknown, coalesce?: string): void;
  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;
}

/** SQLite serves one server process (sqlite-owner.ts): there is no other replica to tell. */
export class SingleProcessChangeFeed extends ChangeFeed {
  publish(): void {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

/**
 * PostgreSQL LISTEN/NOTIFY. A dedicated connection listens (a pooled one would be handed to other
 * work); changes are sent through the pool, batched per PUBLISH_WINDOW_MS into payloads under
 * PostgreSQL's 8000-byte limit (change-envelope.ts). Each replica ignores what it sent itself.
 */
export class PostgresChangeFeed extends ChangeFeed {
  private client: pg.Client | null = null;
  private listeningNow = false;
  private hasListened = false;
  /** When the connection was lost; 0 while listening (so an outage is logged once). */
  private lostAt = 0;
  private stopped = false;
  private retryMs = RECONNECT_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly reader: EnvelopeReader;
  private seq = 0;
  private outbox: unknown[] = [];
  private readonly waitingKeys = new Map<string, number>();
  private flushTimer: NodeJS.Timeout | null = null;
  private sending: Promise<void> | null = null;
  /** Logged once per episode, not once per change. */
  private sendFailing = false;
  private outboxFull = false;

  constructor(
    private readonly databaseUrl: string,
    private readonly db: Database,
    /** This replica's id: notifications carrying it are its own. */
    readonly origin: string,
    private readonly logger: Logger,
  ) {
    super();
    this.reader = new EnvelopeReader(origin);
  }

  /** Whether the listening connection is up now. */
  get listening(): boolean {
    return this.listeningNow;
  }

  /** Resolves after the first attempt to listen; one that failed is retried in the background. */
  async start(): Promise<void> {
    await this.connect();
  }

  /** Sends what waits, then closes the listening connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    await this.sending;
    this.flush();
    await this.sending;
    const client = this.client;
    this.client = null;
    this.listeningNow = false;
    await client?.end().catch(() => undefined);
  }

  publish(change: unknown, coalesce?: string): void {
    if (this.stopped) return;
    const waiting = coalesce === undefined ? undefined : this.waitingKeys.get(coalesce);
    if (waiting !== undefined) {
      this.outbox[waiting] = change;
      return;
    }
    if (this.outbox.length >= MAX_WAITING) {
      if (!this.outboxFull)
        this.logger.warn(
          { waiting: this.outbox.length },
          'change feed: the database takes changes too slowly, dropping new ones',
        );
      this.outboxFull = true;
      return;
    }
    this.outboxFull = false;
    if (coalesce !== undefined) this.waitingKeys.set(coalesce, this.outbox.length);
    this.outbox.push(change);
    this.schedule();
  }

  private schedule(): void {
    if (this.flushTimer || this.sending || this.outbox.length === 0) return;
    this.flushTimer = setTimeout(() => this.flush(), PUBLISH_WINDOW_MS);
    this.flushTimer.unref();
  }

  /** One send at a time, so changes reach the others in the order they were published. */
  private flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.sending || this.outbox.length === 0) return;
    const changes = this.outbox;
    this.outbox = [];
    this.waitingKeys.clear();
    const payloads = encodeChanges(
      this.origin,
      () => this.seq++,
      changes,
      (bytes) => this.logger.warn({ bytes }, 'change feed: a change too large to send was dropped'),
    );
    this.sending = this.send(payloads).finally(() => {
      this.sending = null;
      if (!this.stopped) this.schedule();
    });
  }

  private async send(payloads: string[]): Promise<void> {
    try {
      // One statement, so one transaction: PostgreSQL delivers its notifications in the order sent.
      await sql`select pg_notify(${CHANGE_CHANNEL}, payload) from unnest(${payloads}::text[]) as payload`.execute(
        this.db,
      );
      if (this.sendFailing) this.logger.info('change feed: sending changes to the other replicas again');
      this.sendFailing = false;
    } catch (error) {
      // The others' listeners lose the database too, and resync once it is back.
      if (!this.sendFailing)
        this.logger.warn(
          { err: error },
          "change feed: changes not sent, other replicas' live views miss them",
        );
      this.sendFailing = true;
    }
  }

  private async connect(): Promise<void> {
    this.reconnectTimer = null;
    const client = new pg.Client({
      connectionString: this.databaseUrl,
      application_name: 'boardfleet-change-feed',
      connectionTimeoutMillis: 5_000,
      // A peer gone without a word (a cable, a failover) is noticed by TCP, not only at the next query.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    this.client = client;
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client));
    client.on('notification', (message) => {
      if (message.channel === CHANGE_CHANNEL && message.payload !== undefined) this.receive(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (error) {
      this.lost(client, error);
      return;
    }
    if (this.client !== client) return;
    this.listeningNow = true;
    this.retryMs = RECONNECT_MIN_MS;
    const downMs = Date.now() - this.lostAt;
    this.lostAt = 0;
    if (this.hasListened) {
      this.logger.info(
        { downMs },
        'change feed: listening again; live views read their snapshots again for the changes they missed',
      );
      this.emit('resync');
    }
    this.hasListened = true;
  }

  /** The connection failed or ended: reconnect with backoff (handled once per connection). */
  private lost(client: pg.Client, error?: unknown): void {
    if (this.client !== client) return;
    this.client = null;
    void client.end().catch(() => undefined);
    if (this.stopped) return;
    if (this.lostAt === 0) {
      this.lostAt = Date.now();
      this.logger.warn(
        { err: error, retryInMs: this.retryMs },
        this.hasListened
          ? "change feed: lost its PostgreSQL connection, other replicas' changes are not heard until it reconnects"
          : "change feed: cannot listen on PostgreSQL yet, other replicas' changes are not heard until it can",
      );
    } else {
      this.logger.debug({ err: error, retryInMs: this.retryMs }, 'change feed: reconnecting failed');
    }
    this.listeningNow = false;
    this.reconnectTimer = setTimeout(() => void this.connect(), this.retryMs);
    this.reconnectTimer.unref();
    this.retryMs = Math.min(this.retryMs * 2, RECONNECT_MAX_MS);
  }

  private receive(payload: string): void {
    const decoded = this.reader.read(payload);
    if (!decoded) return;
    if ('dropped' in decoded) {
      this.logger.warn({ reason: decoded.dropped }, 'change feed: notification dropped');
      return;
    }
    for (const change of decoded.changes) {
      try {
        this.emit('change', change);
      } catch (error) {
        this.logger.error({ err: error }, 'change feed: a listener failed on a change');
      }
    }
  }
}

/** The feed for this database: LISTEN/NOTIFY on PostgreSQL, nothing on SQLite (one process). */
export function openChangeFeed(
  databaseUrl: string,
  db: Database,
  origin: string,
  logger: Logger,
): ChangeFeed {
  return databaseUrl.startsWith('sqlite:')
    ? new SingleProcessChangeFeed()
    : new PostgresChangeFeed(databaseUrl, db, origin, logger);
}
