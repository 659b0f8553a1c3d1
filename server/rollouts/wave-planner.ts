/**
 * Splits a rollout's target devices into waves. Each wave names explicit canary devices and/or
 * a cumulative percentage of the whole target (1%, 10%, 50%, 100% as Mender's phases read):
 * wave k holds the devices up to ceil(p_k × N) in a stable order, minus those already placed,
 * so every device lands in exactly one wave and a non-empty wave never rounds down to nobody.
 */
export interface WavePlanInput {
  canary?: string[];
  percent?: number;
}

export function planWaves(targetDeviceIds: readonly string[], waves: readonly WavePlanInput[]): string[][] {
  const target = [...new Set(targetDeviceIds)].sort();
  const targetSet = new Set(target);
  const placed = new Set<string>();
  const plan: string[][] = [];
  for (const wave of waves) {
    const members: string[] = [];
    for (const id of wave.canary ?? []) {
      if (targetSet.has(id) && !placed.has(id)) {
        placed.add(id);
        members.push(id);
      }
    }
    if (wave.percent !== undefined) {
      const percent = Math.min(100, Math.max(0, wave.percent));
      // At least one more device per wave with a share, so a wave after canaries is never empty.
      const upTo = Math.max(Math.ceil((percent / 100) * target.length), percent > 0 ? placed.size + 1 : 0);
      for (const id of target) {
        if (placed.size >= upTo) break;
        if (!placed.has(id)) {
          placed.add(id);
          members.push(id);
        }
      }
    }
    plan.push(members);
  }
  return plan;
}

/** The wave a device that starts matching during the rollout joins: the last wave not yet finished. */
export function waveForLateJoiner(waveStates: readonly string[]): number | null {
  for (let index = waveStates.length - 1; index >= 0; index--) {
    if (waveStates[index] === 'pending' || waveStates[index] === 'running') return index;
  }
  return null;
}
