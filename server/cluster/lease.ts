import type { Clock } from '../common/clock.ts';
import type { Database } from '../db/database.ts';

/**
 * Work one replica at a time may do (ticking rollouts, say), held for `ttlMs` and renewed by
 * holding it again before it runs out. A replica that dies stops renewing, and another takes the
 * lease once it has expired. Expiry is by the replicas' clocks: they must agree within a fraction
 * of `ttlMs` (NTP does that).
 */
export class Lease {
  constructor(
    private readonly db: Database,
    private readonly clock: Clock,
    readonly name: string,
    private readonly holder: string,
    private readonly ttlMs: number,
  ) {}

  /** Takes or renews the lease; false while another replica holds it. One statement, so two replicas cannot both win. */
  async hold(): Promise<boolean> {
    const now = this.clock.now();
    const row = await this.db
      .insertInto('server_leases')
      .values({ name: this.name, holder: this.holder, expires_at: now + this.ttlMs })
      .onConflict((conflict) =>
        conflict
          .column('name')
          .doUpdateSet({ holder: this.holder, expires_at: now + this.ttlMs })
          .where((eb) =>
            eb.or([eb('server_leases.holder', '=', this.holder), eb('server_leases.expires_at', '<', now)]),
          ),
      )
      .returning('holder')
      .executeTakeFirst();
    return row?.holder === this.holder;
  }

  /** Gives the lease up (a clean stop), so another replica need not wait for it to expire. */
  async release(): Promise<void> {
    await this.db
      .deleteFrom('server_leases')
      .where('name', '=', this.name)
      .where('holder', '=', this.holder)
      .execute();
  }
}
