import { expect } from 'vitest';
import type { startAgentProcess } from './agent-process.ts';
import { eventually, type TestServer } from './test-server.ts';

/** Revocation must stop a device this fast: the broker drops it at once, the rest is scheduling. */
export const REVOCATION_DEADLINE_MS = 5_000;

/**
 * Revokes the device a running agent is, then waits for the agent to lose its connection within
 * REVOCATION_DEADLINE_MS and to be refused when it connects again (the refusal `refused` matches).
 */
export async function revokeAndSeeStopped(
  server: TestServer,
  deviceId: string,
  agent: ReturnType<typeof startAgentProcess>,
  refused: RegExp,
): Promise<void> {
  const outputBefore = agent.output().length;
  const revokedAt = Date.now();
  expect((await server.api('POST', `/api/v1/devices/${deviceId}/revoke`, {})).status).toBe(200);
  await eventually(
    'the agent disconnected',
    () => /MQTT connection lost/.test(agent.output().slice(outputBefore)),
    REVOCATION_DEADLINE_MS,
  );
  expect(Date.now() - revokedAt).toBeLessThan(REVOCATION_DEADLINE_MS);
  await eventually(
    'the reconnection refused',
    () =>
      new RegExp(`connection attempt \\d+ failed: ${refused.source}`).test(
        agent.output().slice(outputBefore),
      ),
    30_000,
  );
}
