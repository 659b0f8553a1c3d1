import { Inject, Injectable } from '@nestjs/common';
import { sql } from 'kysely';
import type { RolloutProgress } from '../../protocol/api/rollouts.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import { countWave } from './wave-evaluator.ts';

/** A rollout's state and per-wave counts, counted in SQL: cheap enough to send several times a second. */
@Injectable()
export class RolloutProgressRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async progress(rolloutId: string): Promise<RolloutProgress | null> {
    const rollout = await this.db
      .selectFrom('rollouts')
      .select(['state', 'reason'])
      .where('id', '=', rolloutId)
      .executeTakeFirst();
    if (!rollout) return null;
    const waves = await this.db
      .selectFrom('rollout_waves')
      .select(['wave_index', 'name', 'state'])
      .where('rollout_id', '=', rolloutId)
      .orderBy('wave_index')
      .execute();
    const groups = await this.db
      .selectFrom('rollout_devices')
      .select(['wave_index', 'state', sql<number>`count(*)`.as('count')])
      .where('rollout_id', '=', rolloutId)
      .groupBy(['wave_index', 'state'])
      .execute();
    return {
      rolloutId,
      state: rollout.state,
      reason: rollout.reason,
      waves: waves.map((wave) => ({
        index: wave.wave_index,
        name: wave.name,
        state: wave.state,
        counts: countWave(
          groups
            .filter((group) => group.wave_index === wave.wave_index)
            .map((group) => ({ state: group.state, count: Number(group.count) })),
        ),
      })),
    };
  }
}
