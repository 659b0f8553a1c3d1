import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import { processRuns } from '../common/process-alive.ts';
import { generateId } from '../common/secrets.ts';
import type { Database } from '../db/database.ts';
import type { ServerReplicaTable } from '../db/schema.ts';

/** How often a replica says it is alive. */
export const REPLICA_HEARTBEAT_MS = 2_000;
/** A replica not heard of for this long has gone (killed, partitioned): its work is taken over. */
export const REPLICA_GONE_AFTER_MS = 10_000;
/** Rows of replicas gone this long are deleted: restarts would otherwise pile them up. */
const FORGET_AFTER_MS = 24 * 60 * 60 * 1000;

export type ReplicaRecord = ServerReplicaTable;

/**
 * This server process among the others sharing its database. Each replica writes its row every
 * few seconds; one whose row went stale has gone. On SQLite there is only ever this one (the
 * database file is claimed, see sqlite-owner.ts), and the registry costs one row.
 */
export class ReplicaRegistry {
  readonly id = `${hostname()}-${process.pid}-${generateId('r').slice(-6)}`;
  private timer: NodeJS.Timeout | null = null;
  private startedAt = 0;

  constructor(
    private readonly db: Database,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** Registers this replica; the others alive at that moment are returned (none on a first start). */
  async start(details: { httpUrl: string; broker: string }): Promise<ReplicaRecord[]> {
    const now = this.clock.now();
    this.startedAt = now;
    const others = await this.othersAlive();
    await this.db
      .insertInto('server_replicas')
      .values({
        id: this.id,
        http_url: details.httpUrl,
        broker: details.broker,
        host: hostname(),
        pid: process.pid,
        started_at: now,
        seen_at: now,
      })
      .execute();
    await this.db
      .deleteFrom('server_replicas')
      .where('seen_at', '<', now - FORGET_AFTER_MS)
      .execute();
    this.timer = setInterval(() => void this.beat(), REPLICA_HEARTBEAT_MS);
    this.timer.unref();
    return others;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.db.deleteFrom('server_replicas').where('id', '=', this.id).execute();
  }

  /**
   * The other replicas heard of within REPLICA_GONE_AFTER_MS, less those on this host whose
   * process has ended (a server killed and restarted at once must not wait for its old self).
   */
  async othersAlive(): Promise<ReplicaRecord[]> {
    const recent = await this.db
      .selectFrom('server_replicas')
      .selectAll()
      .where('id', '!=', this.id)
      .where('seen_at', '>=', this.clock.now() - REPLICA_GONE_AFTER_MS)
      .orderBy('started_at')
      .execute();
    return recent.filter((replica) => processRuns(replica.host, replica.pid));
  }

  /** Whether the replica with this id is alive (this one always is). */
  async isAlive(id: string): Promise<boolean> {
    if (id === this.id) return true;
    const row = await this.db
      .selectFrom('server_replicas')
      .select(['seen_at', 'host', 'pid'])
      .where('id', '=', id)
      .executeTakeFirst();
    return (
      row !== undefined &&
      row.seen_at >= this.clock.now() - REPLICA_GONE_AFTER_MS &&
      processRuns(row.host, row.pid)
    );
  }

  /** When the earliest replica alive now started: what the replicas saw of the fleet goes back that far. */
  async clusterSince(): Promise<number> {
    const earliest = (await this.othersAlive())[0]?.started_at ?? this.startedAt;
    return Math.min(earliest, this.startedAt);
  }

  private async beat(): Promise<void> {
    try {
      await this.db
        .updateTable('server_replicas')
        .set({ seen_at: this.clock.now() })
        .where('id', '=', this.id)
        .execute();
    } catch (error) {
      // The database health check reports outages; a missed beat only makes others wait.
      this.logger.debug({ err: error }, 'replica heartbeat not written');
    }
  }
}
