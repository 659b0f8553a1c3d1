/** The rollback orders a plan's desired states name, with what each allows. Pure. */
import semver from 'semver';
import type { DesiredState } from '../../protocol/schemas.ts';
import type { RolloutStep } from './rollout-steps.ts';

/** From the version a device runs of this rollout to the older one it is sent back to. */
export interface RollbackOrderTerms {
  from: string;
  to: string;
}

/**
 * Each order id the send-desired steps name, with its terms: `from` is the version the device's
 * current desired state names (what the rollout sent it), `to` the version it goes back to. An id
 * whose step goes to no older version (the device never left it) needs no order; the first
 * device's terms stand for the rest of its id (one rollout, one earlier artifact).
 */
export function rollbackOrdersOf(
  steps: readonly RolloutStep[],
  desired: ReadonlyMap<string, DesiredState>,
): Map<string, RollbackOrderTerms> {
  const orders = new Map<string, RollbackOrderTerms>();
  for (const step of steps) {
    if (step.kind !== 'send-desired' || !step.deployment?.rollbackOrder) continue;
    const id = step.deployment.rollbackOrder;
    const from = desired.get(step.deviceId)?.deployment?.version;
    const to = step.deployment.version;
    if (orders.has(id) || !from || !semver.valid(from) || !semver.valid(to) || !semver.lt(to, from)) continue;
    orders.set(id, { from, to });
  }
  return orders;
}
