import { Inject, Injectable } from '@nestjs/common';
import { sql } from 'kysely';
import type { FleetSummary } from '../../protocol/api/fleet.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';

/** Devices listed by name in the summary's `failingDevices`; the count covers them all. */
export const FAILING_DEVICES_SHOWN = 20;
/** The key for devices that report no board, or run no version. */
export const UNKNOWN_BOARD = 'unknown';
export const NO_VERSION = 'none';

/** The fleet at a glance, counted in SQL over active (not revoked) devices. */
@Injectable()
export class FleetSummaryRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async summary(): Promise<FleetSummary> {
    const active = this.db.selectFrom('devices').where('revoked_at', 'is', null);
    const count = sql<number>`count(*)`.as('count');
    const byOnline = await active.select(['online', count]).groupBy('online').execute();
    const boardExpression = sql<string | null>`coalesce(reported_board, board)`;
    const byBoard = await active
      .select([boardExpression.as('board'), count])
      .groupBy(boardExpression)
      .execute();
    const byVersion = await active.select(['running_version', count]).groupBy('running_version').execute();
    const failing = active
      .where('online', '=', 1)
      .where((eb) =>
        eb.or([eb('health_problem', 'is not', null), eb('attached_board_problem', 'is not', null)]),
      );
    const failingCount = await failing.select(count).executeTakeFirstOrThrow();
    const failingDevices = await failing
      .select(['id', 'name', sql<string>`coalesce(health_problem, attached_board_problem)`.as('reason')])
      .orderBy(sql`lower(name)`)
      .orderBy('id')
      .limit(FAILING_DEVICES_SHOWN)
      .execute();

    const online = Number(byOnline.find((row) => row.online === 1)?.count ?? 0);
    const total = byOnline.reduce((sum, row) => sum + Number(row.count), 0);
    return {
      total,
      online,
      offline: total - online,
      byBoard: Object.fromEntries(byBoard.map((row) => [row.board ?? UNKNOWN_BOARD, Number(row.count)])),
      byVersion: Object.fromEntries(
        byVersion.map((row) => [row.running_version ?? NO_VERSION, Number(row.count)]),
      ),
      failingHealth: Number(failingCount.count),
      failingDevices,
    };
  }
}
