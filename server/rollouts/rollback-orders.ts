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
    if (step.kind !== 'send-desired' || !step.deployment) continue;
    const current = desired.get(step.deviceId)?.deployment;
    // Each part of a composite deployment goes back on its own order, from the same artifact's version.
    for (const part of [step.deployment, ...(step.deployment.parts ?? [])]) {
      const id = part.rollbackOrder;
      if (!id || orders.has(id)) continue;
      const from = current
        ? [current, ...(current.parts ?? [])].find((sent) => sent.artifact === part.artifact)?.version
        : undefined;
      const to = part.version;
      if (!from || !semver.valid(from) || !semver.valid(to) || !semver.lt(to, from)) continue;
      orders.set(id, { from, to });
    }
  }
  return orders;
}
