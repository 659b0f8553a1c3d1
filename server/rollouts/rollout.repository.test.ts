import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeploymentState, RolloutState, waveConfigSchema, WaveState } from '../../protocol/api/rollouts.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { databaseBackends } from '../../test/support/databases.ts';
import type { ArtifactRecord } from '../artifacts/artifact.repository.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { type Deployment, deploymentFromArtifact, nextDesired } from './desired-deployment.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import { type RolloutDeviceRecord, RolloutRepository } from './rollout.repository.ts';
import { newRolloutDevice } from './rollout-planner.ts';

const artifact = (id: string) =>
  ({
    id,
    kind: 'app-bundle',
    name: 'app',
    version: '1.0.0',
    sha256: 'a'.repeat(64),
    size: 1,
  }) as ArtifactRecord;

/** A running one-wave rollout of release rel-1 with these devices. */
async function insertRunningRollout(rollouts: RolloutRepository, id: string, devices: RolloutDeviceRecord[]) {
  await rollouts.insertRollout(
    {
      id,
      name: id,
      releaseId: 'rel-1',
      target: { deviceIds: devices.map((device) => device.deviceId) },
      options: { onTrip: 'pause', rollbackOnAbort: false, dynamic: false },
      state: RolloutState.Running,
      reason: null,
      createdAt: 0,
      updatedAt: 0,
    },
    [
      {
        index: 0,
        name: 'all',
        config: waveConfigSchema.parse({}),
        state: WaveState.Running,
        startedAt: 0,
        finishedAt: null,
      },
    ],
    devices,
  );
}

describe.each(databaseBackends)('the rollout repository, on $name', (backend) => {
  let db: Database;
  let drop: () => Promise<void>;
  let rollouts: RolloutRepository;

  beforeEach(async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    await migrateToLatest(db);
    await db.insertInto('releases').values({ id: 'rel-1', name: 'r', created_at: 0 }).execute();
    rollouts = new RolloutRepository(db);
  });
  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  describe('which artifacts a deployment sent a device', () => {
    /** A rollout whose one device went from `previous` to `artifactId` (and, when told, back again). */
    async function deployed(options: {
      rolloutId: string;
      artifactId: string;
      previous: Deployment | null;
      rolledBack?: boolean;
    }): Promise<Deployment> {
      const deploymentId = `dep-${options.rolloutId}`;
      await insertRunningRollout(rollouts, options.rolloutId, [
        {
          ...newRolloutDevice('dev-a', 0, 0, deploymentId),
          state: options.rolledBack ? DeploymentState.RolledBack : DeploymentState.Committed,
          artifactId: options.artifactId,
          previousDeployment: options.previous,
        },
      ]);
      const deployment = deploymentFromArtifact(artifact(options.artifactId), deploymentId);
      const sent: DesiredState['deployment'] = options.rolledBack
        ? options.previous && { ...options.previous, rollbackOrder: 'ro-test.order' }
        : deployment;
      await rollouts.saveDesired('dev-a', nextDesired(await rollouts.desired('dev-a'), sent, 0), 0);
      return deployment;
    }

    const sent = async (deviceId: string, ...artifactIds: string[]) =>
      Promise.all(artifactIds.map((id) => rollouts.sentArtifact(deviceId, id)));

    it('sends nothing to a device without a desired state', async () => {
      expect(await sent('dev-a', 'art-1')).toEqual([false]);
    });

    it('a device gets its current deployment and the one it replaced, nothing older or unrelated', async () => {
      const first = await deployed({ rolloutId: 'ro-1', artifactId: 'art-1', previous: null });
      const second = await deployed({ rolloutId: 'ro-2', artifactId: 'art-2', previous: first });
      await deployed({ rolloutId: 'ro-3', artifactId: 'art-3', previous: second });
      expect(await sent('dev-a', 'art-3', 'art-2', 'art-1', 'art-other')).toEqual([true, true, false, false]);
      expect(await sent('dev-b', 'art-3')).toEqual([false]);
    });

    it('after a rollback, a device gets the deployment it went back to and the one it left', async () => {
      const first = await deployed({ rolloutId: 'ro-1', artifactId: 'art-1', previous: null });
      const second = await deployed({ rolloutId: 'ro-2', artifactId: 'art-2', previous: first });
      await deployed({ rolloutId: 'ro-3', artifactId: 'art-3', previous: second, rolledBack: true });
      expect(await sent('dev-a', 'art-2', 'art-3', 'art-1')).toEqual([true, true, false]);
    });

    it('a device rolled back to nothing gets nothing', async () => {
      await deployed({ rolloutId: 'ro-1', artifactId: 'art-1', previous: null, rolledBack: true });
      expect(await sent('dev-a', 'art-1')).toEqual([false]);
    });
  });

  describe('which desired states the broker has taken', () => {
    const desired = (version: number): DesiredState => ({ version, issuedAt: 0, deployment: null });
    const unpublished = async () =>
      (await rollouts.allDesired({ unpublished: true }))
        .map(({ deviceId, desired: state }) => `${deviceId}@${state.version}`)
        .sort();

    it('keeps a saved desired state unpublished until the broker acknowledged that version', async () => {
      await rollouts.saveDesired('dev-a', desired(1), 10);
      await rollouts.saveDesired('dev-b', desired(1), 10);
      expect(await unpublished()).toEqual(['dev-a@1', 'dev-b@1']);
      await rollouts.markPublished([{ deviceId: 'dev-a', version: 1 }], 20);
      expect(await unpublished()).toEqual(['dev-b@1']);
      expect((await rollouts.allDesired()).map(({ deviceId }) => deviceId).sort()).toEqual([
        'dev-a',
        'dev-b',
      ]);
    });

    it('makes a new payload unpublished again, and does not mark it by an older version’s acknowledgement', async () => {
      await rollouts.saveDesired('dev-a', desired(1), 10);
      await rollouts.markPublished([{ deviceId: 'dev-a', version: 1 }], 20);
      await rollouts.saveDesired('dev-a', desired(2), 30);
      expect(await unpublished()).toEqual(['dev-a@2']);
      // The acknowledgement of version 1 arriving late (another replica was slow) leaves version 2 as it is.
      await rollouts.markPublished([{ deviceId: 'dev-a', version: 1 }], 40);
      expect(await unpublished()).toEqual(['dev-a@2']);
      await rollouts.markPublished([{ deviceId: 'dev-a', version: 2 }], 50);
      expect(await unpublished()).toEqual([]);
    });

    it('marks a large batch of many versions at once', async () => {
      const batch = Array.from({ length: 1_200 }, (_, i) => ({ deviceId: `dev-${i}`, version: 1 + (i % 3) }));
      for (const { deviceId, version } of batch) await rollouts.saveDesired(deviceId, desired(version), 10);
      await rollouts.markPublished(batch.slice(0, 1_100), 20);
      expect(await unpublished()).toHaveLength(100);
    });
  });

  describe('writing many devices at once', () => {
    it('writes each device its own changes, grouped by the fields they change, in batches past one statement', async () => {
      const ids = Array.from({ length: 1_203 }, (_, i) => `dev-${i}`);
      await insertRunningRollout(
        rollouts,
        'ro-1',
        ids.map((id) => newRolloutDevice(id, 0, 0, `dep-${id}`)),
      );
      // As stored: JSON, without the undefined fields.
      const previous = JSON.parse(
        JSON.stringify(deploymentFromArtifact(artifact('art-0'), 'dep-old')),
      ) as Deployment;
      await rollouts.updateDevices('ro-1', [
        ...ids.slice(0, 1_200).map((deviceId, i) => ({
          deviceId,
          changes: {
            state: DeploymentState.Notified,
            deploymentId: `dep-new-${i}`,
            notifiedAt: 1_700_000_000_000 + i,
            previousDeployment: i === 0 ? previous : null,
            stateChangedAt: 5,
          },
        })),
        {
          deviceId: 'dev-1200',
          changes: { state: DeploymentState.Failed, reason: 'no artifact', progress: 40 },
        },
        { deviceId: 'dev-not-in-rollout', changes: { state: DeploymentState.Failed } },
        { deviceId: 'dev-1201', changes: {} },
      ]);
      const byId = new Map((await rollouts.devices('ro-1')).map((device) => [device.deviceId, device]));
      expect(byId.get('dev-0')).toMatchObject({
        state: DeploymentState.Notified,
        deploymentId: 'dep-new-0',
        notifiedAt: 1_700_000_000_000,
        previousDeployment: previous,
        stateChangedAt: 5,
      });
      expect(byId.get('dev-1199')).toMatchObject({
        deploymentId: 'dep-new-1199',
        notifiedAt: 1_700_000_001_199,
        previousDeployment: null,
      });
      expect(byId.get('dev-1200')).toMatchObject({
        state: DeploymentState.Failed,
        reason: 'no artifact',
        progress: 40,
        deploymentId: 'dep-dev-1200',
      });
      expect(byId.get('dev-1201')).toMatchObject({
        state: DeploymentState.Queued,
        deploymentId: 'dep-dev-1201',
      });
      expect(byId.size).toBe(1_203);
    });

    it('saves many desired states, replacing stored ones and keeping the last one named for a device', async () => {
      const desired = (version: number): DesiredState => ({ version, issuedAt: version, deployment: null });
      await rollouts.saveDesired('dev-0', desired(1), 10);
      await rollouts.markPublished([{ deviceId: 'dev-0', version: 1 }], 20);
      await rollouts.saveDesiredStates(
        [
          ...Array.from({ length: 1_100 }, (_, i) => ({ deviceId: `dev-${i}`, desired: desired(2) })),
          { deviceId: 'dev-5', desired: desired(3) },
        ],
        30,
      );
      const all = await rollouts.desiredFor(Array.from({ length: 1_100 }, (_, i) => `dev-${i}`));
      expect(all.size).toBe(1_100);
      expect(all.get('dev-0')?.version).toBe(2);
      expect(all.get('dev-5')?.version).toBe(3);
      expect(await rollouts.allDesired({ unpublished: true })).toHaveLength(1_100);
    });
  });

  describe('what the dashboard reads', () => {
    /** A one-wave rollout whose devices are in the given states. */
    const rolloutWith = (id: string, states: Record<string, DeploymentState>) =>
      insertRunningRollout(
        rollouts,
        id,
        Object.entries(states).map(([deviceId, state]) => ({
          ...newRolloutDevice(deviceId, 0, 0, `dep-${id}-${deviceId}`),
          state,
        })),
      );

    it('counts every rollout’s devices by state in one query', async () => {
      await rolloutWith('ro-a', {
        'dev-1': DeploymentState.Committed,
        'dev-2': DeploymentState.Committed,
        'dev-3': DeploymentState.Failed,
      });
      await rolloutWith('ro-b', { 'dev-1': DeploymentState.Queued });
      const counts = await rollouts.stateCountsByRollout();
      expect(
        Object.fromEntries(
          [...counts].map(([id, entries]) => [
            id,
            [...entries].sort((a, b) => a.state.localeCompare(b.state)),
          ]),
        ),
      ).toEqual({
        'ro-a': [
          { state: 'committed', count: 2 },
          { state: 'failed', count: 1 },
        ],
        'ro-b': [{ state: 'queued', count: 1 }],
      });
    });

    it('names a rollout’s devices, and leaves out one that no longer exists', async () => {
      await new DeviceRepository(db).create({
        id: 'dev-1',
        name: 'kitchen-pi',
        board: null,
        tags: [],
        secretHash: 'x',
        now: 0,
      });
      await rolloutWith('ro-a', { 'dev-1': DeploymentState.Queued, 'dev-gone': DeploymentState.Queued });
      expect(Object.fromEntries(await rollouts.deviceNames('ro-a'))).toEqual({ 'dev-1': 'kitchen-pi' });
    });
  });
});
