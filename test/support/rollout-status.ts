import { eventually, type TestServer } from './test-server.ts';

/** The rollout status the API returns (GET /api/v1/rollouts/:id), as the tests read it. */
export interface RolloutStatus {
  id: string;
  state: string;
  reason: string | null;
  waves: Array<{
    name: string;
    state: string;
    startedAt: number | null;
    finishedAt: number | null;
    counts: { size: number; committed: number; failed: number; queued: number; rolledBack: number };
  }>;
  devices: Array<{
    deviceId: string;
    waveIndex: number;
    deploymentId: string;
    state: string;
    attempt: number;
    artifactId: string | null;
    partArtifactIds: string[];
    transferMode: 'full' | 'delta' | null;
    transferBytes: number | null;
    artifactBytes: number | null;
    reason: string | null;
    notifiedAt: number | null;
    soakUntil: number | null;
    stateChangedAt: number;
  }>;
  transfer: { deltaDevices: number; fullDevices: number; bytes: number; artifactBytes: number };
  log: Array<{ at: number; message: string }>;
}

/** A rollout's status once it has stopped moving: completed, paused (a tripped wave) or aborted. */
export function waitForRolloutToSettle(
  server: Pick<TestServer, 'api'>,
  rolloutId: string,
  timeoutMs: number,
): Promise<RolloutStatus> {
  return eventually(
    `rollout ${rolloutId} to finish`,
    async () => {
      const { body } = await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${rolloutId}`);
      return ['completed', 'paused', 'aborted'].includes(body.state) ? body : undefined;
    },
    timeoutMs,
  );
}

/**
 * Rolls a release out in one wave (1 s soak) to the devices with `tag` and waits for the rollout
 * to complete; fails with the last status when it ends otherwise or takes longer than `timeoutMs`.
 */
export async function rollOutToTag(
  server: Pick<TestServer, 'api'>,
  release: string,
  tag: string,
  timeoutMs: number,
): Promise<RolloutStatus> {
  const created = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
    release,
    target: { tags: [tag] },
    waves: [{ name: 'all', percent: 100, soakSeconds: 1 }],
  });
  if (created.status !== 201) throw new Error(`creating the rollout answered ${created.status}`);
  const settled = await waitForRolloutToSettle(server, created.body.id, timeoutMs);
  if (settled.state !== 'completed') throw new Error(`the rollout ended ${settled.state}: ${settled.reason}`);
  return settled;
}
