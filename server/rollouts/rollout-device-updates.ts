import { type RawBuilder, sql } from 'kysely';
import type { RolloutDevice } from '../../protocol/api/rollouts.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import type { Database } from '../db/database.ts';

/** What may change in a device's deployment row (not which rollout, device or wave it belongs to). */
export type RolloutDeviceChanges = Partial<
  Omit<RolloutDevice, 'deviceId' | 'waveIndex'> & { previousDeployment: DesiredState['deployment'] }
>;

/** A device's changes, to be written with others like it. */
export interface RolloutDeviceUpdate {
  deviceId: string;
  changes: RolloutDeviceChanges;
}

type ChangedField = keyof RolloutDeviceChanges;

/** Each field's column and the SQL type its parameter is cast to (PostgreSQL types VALUES rows by them). */
const COLUMNS: Record<ChangedField, { column: string; type: 'text' | 'integer' | 'bigint' }> = {
  deploymentId: { column: 'deployment_id', type: 'text' },
  state: { column: 'state', type: 'text' },
  attempt: { column: 'attempt', type: 'integer' },
  artifactId: { column: 'artifact_id', type: 'text' },
  partArtifactIds: { column: 'part_artifact_ids', type: 'text' },
  previousDeployment: { column: 'previous_deployment', type: 'text' },
  progress: { column: 'progress', type: 'integer' },
  transferMode: { column: 'transfer_mode', type: 'text' },
  transferBytes: { column: 'transfer_bytes', type: 'bigint' },
  artifactBytes: { column: 'artifact_bytes', type: 'bigint' },
  reason: { column: 'reason', type: 'text' },
  notifiedAt: { column: 'notified_at', type: 'bigint' },
  soakUntil: { column: 'soak_until', type: 'bigint' },
  stateChangedAt: { column: 'state_changed_at', type: 'bigint' },
};

/** Rows per statement: at most 14 parameters each, far below SQLite's and PostgreSQL's limits. */
const ROWS_PER_STATEMENT = 500;

/**
 * Writes many devices' changes in a few statements: the updates that change the same fields go
 * together in `UPDATE … FROM (VALUES …)`, which SQLite and PostgreSQL both run (a wave of 9,000
 * devices is 18 statements rather than 9,000 round trips to the database).
 */
export async function updateRolloutDevices(
  db: Database,
  rolloutId: string,
  updates: readonly RolloutDeviceUpdate[],
): Promise<void> {
  const byFields = new Map<string, RolloutDeviceUpdate[]>();
  for (const update of updates) {
    const fields = changedFields(update.changes);
    if (fields.length === 0) continue;
    const key = fields.join(',');
    byFields.set(key, [...(byFields.get(key) ?? []), update]);
  }
  for (const [key, group] of byFields) {
    const fields = key.split(',') as ChangedField[];
    for (let start = 0; start < group.length; start += ROWS_PER_STATEMENT)
      await updateStatement(rolloutId, fields, group.slice(start, start + ROWS_PER_STATEMENT)).execute(db);
  }
}

function changedFields(changes: RolloutDeviceChanges): ChangedField[] {
  return (Object.keys(COLUMNS) as ChangedField[]).filter((field) => changes[field] !== undefined);
}

/** VALUES columns are named column1, column2, … on both databases: column1 is the device id. */
function updateStatement(
  rolloutId: string,
  fields: readonly ChangedField[],
  updates: readonly RolloutDeviceUpdate[],
): RawBuilder<unknown> {
  const rows = updates.map(
    ({ deviceId, changes }) =>
      sql`(${sql.join([
        sql`CAST(${deviceId} AS TEXT)`,
        ...fields.map(
          (field) => sql`CAST(${columnValue(field, changes)} AS ${sql.raw(COLUMNS[field].type)})`,
        ),
      ])})`,
  );
  const assignments = fields.map(
    (field, index) => sql`${sql.ref(COLUMNS[field].column)} = ${sql.raw(`v.column${index + 2}`)}`,
  );
  return sql`UPDATE rollout_devices SET ${sql.join(assignments)}
    FROM (VALUES ${sql.join(rows)}) AS v
    WHERE rollout_devices.rollout_id = ${rolloutId} AND rollout_devices.device_id = v.column1`;
}

function columnValue(field: ChangedField, changes: RolloutDeviceChanges): string | number | null {
  if (field === 'partArtifactIds')
    return changes.partArtifactIds?.length ? JSON.stringify(changes.partArtifactIds) : null;
  if (field === 'previousDeployment')
    return changes.previousDeployment ? JSON.stringify(changes.previousDeployment) : null;
  return changes[field] as string | number | null;
}
