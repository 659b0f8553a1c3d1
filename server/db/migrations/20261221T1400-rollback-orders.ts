import type { Kysely } from 'kysely';

// A migration is history: it keeps its own copy of what it needs, as it was when it was written.

/** What stood for a signed rollback order before there were any: the unsigned flag's true. */
const LEGACY_ORDER = 'unsigned-legacy-rollback';

type Deployment = Record<string, unknown> & { rollback?: boolean };

type Tables = {
  device_desired: { device_id: string; payload: string };
  rollout_devices: { rollout_id: string; device_id: string; previous_deployment: string | null };
};

/** A stored deployment with the unsigned `rollback` flag replaced by `rollbackOrder`. */
function withRollbackOrder(deployment: Deployment): Deployment {
  const { rollback, ...rest } = deployment;
  return { ...rest, rollbackOrder: rollback ? LEGACY_ORDER : null };
}

/**
 * Desired deployments no longer carry the unsigned `rollback` flag: a rollback names the signed
 * order that allows it (`rollbackOrder`). Stored desired states and the deployments rollouts
 * would send back are rewritten so that what the server sends next parses on new agents.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const typed = db as Kysely<Tables>;
  const desired = await typed.selectFrom('device_desired').select(['device_id', 'payload']).execute();
  for (const row of desired) {
    const payload = JSON.parse(row.payload) as { deployment: Deployment | null };
    if (!payload.deployment || !('rollback' in payload.deployment)) continue;
    await typed
      .updateTable('device_desired')
      .set({ payload: JSON.stringify({ ...payload, deployment: withRollbackOrder(payload.deployment) }) })
      .where('device_id', '=', row.device_id)
      .execute();
  }
  const previous = await typed
    .selectFrom('rollout_devices')
    .select(['rollout_id', 'device_id', 'previous_deployment'])
    .where('previous_deployment', 'is not', null)
    .execute();
  for (const row of previous) {
    const deployment = JSON.parse(row.previous_deployment as string) as Deployment;
    if (!('rollback' in deployment)) continue;
    await typed
      .updateTable('rollout_devices')
      .set({ previous_deployment: JSON.stringify(withRollbackOrder(deployment)) })
      .where('rollout_id', '=', row.rollout_id)
      .where('device_id', '=', row.device_id)
      .execute();
  }
}

export async function down(): Promise<void> {}
