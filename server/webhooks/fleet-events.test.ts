import { describe, expect, it } from 'vitest';
import { DeploymentState, RolloutState, WaveState } from '../../protocol/api/rollouts.ts';
import type { Health } from '../../protocol/schemas.ts';
import { DeploymentEvent, RolloutEvent, WaveEvent } from '../rollouts/rollout-state-machine.ts';
import type { RolloutStep } from '../rollouts/rollout-steps.ts';
import { announcesEvent, healthProblemEvents, presenceEvent, rolloutEvents } from './fleet-events.ts';
import { webhookEvents, webhookUrl } from './webhook.service.ts';

const rollout = { id: 'ro-1', releaseId: 'rel-1', createdAt: 1_000 };
const ids = { rolloutId: 'ro-1', releaseId: 'rel-1' };

const health = (diskFreePercent: number, at = 5_000): Health => ({
  at,
  uptimeSeconds: 10,
  load: [0, 0, 0],
  memory: { totalBytes: 100, availableBytes: 50 },
  disk: { totalBytes: 100, freeBytes: diskFreePercent },
  cpuTemperatureCelsius: null,
  agentRssBytes: 1,
});

describe('webhook events from rollout steps', () => {
  it.each<{ name: string; step: RolloutStep; expected: object[] }>([
    {
      name: 'the first wave starting announces the rollout',
      step: {
        kind: 'move-wave',
        waveIndex: 0,
        event: WaveEvent.Start,
        state: WaveState.Running,
        changes: {},
      },
      expected: [{ type: 'rollout.created', key: 'rollout.created:ro-1', at: 1_000, data: ids }],
    },
    {
      name: 'a later wave starting announces nothing',
      step: {
        kind: 'move-wave',
        waveIndex: 1,
        event: WaveEvent.Start,
        state: WaveState.Running,
        changes: {},
      },
      expected: [],
    },
    {
      name: 'a tripped wave',
      step: {
        kind: 'move-wave',
        waveIndex: 1,
        event: WaveEvent.ErrorThresholdCrossed,
        state: WaveState.Tripped,
        changes: { finishedAt: 7_000 },
      },
      expected: [
        {
          type: 'wave.tripped',
          key: 'wave.tripped:ro-1:1:7000',
          data: { ...ids, waveIndex: 1, reason: null },
        },
      ],
    },
    {
      name: 'a pause',
      step: {
        kind: 'move-rollout',
        event: RolloutEvent.Pause,
        state: RolloutState.Paused,
        reason: 'paused by ann',
        at: 8_000,
      },
      expected: [
        {
          type: 'rollout.paused',
          key: 'rollout.paused:ro-1:8000',
          at: 8_000,
          data: { ...ids, reason: 'paused by ann' },
        },
      ],
    },
    {
      name: 'a resume announces nothing',
      step: {
        kind: 'move-rollout',
        event: RolloutEvent.Resume,
        state: RolloutState.Running,
        reason: null,
        at: 8_000,
      },
      expected: [],
    },
    {
      name: 'a device that failed',
      step: {
        kind: 'move-device',
        deviceId: 'dev-1',
        event: DeploymentEvent.Fail,
        state: DeploymentState.Failed,
        changes: { reason: 'went offline during the soak', stateChangedAt: 9_000 },
      },
      expected: [
        {
          type: 'deployment.failed',
          key: 'deployment.failed:ro-1:dev-1:9000',
          data: { ...ids, deviceId: 'dev-1', state: 'failed', reason: 'went offline during the soak' },
        },
      ],
    },
    {
      name: 'a device sent back by an abort announces nothing of its own',
      step: {
        kind: 'move-device',
        deviceId: 'dev-1',
        event: DeploymentEvent.Abort,
        state: DeploymentState.RolledBack,
        changes: { stateChangedAt: 9_000 },
      },
      expected: [],
    },
    {
      name: 'download progress announces nothing',
      step: {
        kind: 'move-device',
        deviceId: 'dev-1',
        event: DeploymentEvent.DownloadStarted,
        state: DeploymentState.Downloading,
        changes: { progress: 40 },
      },
      expected: [],
    },
  ])('$name', ({ step, expected }) => {
    const events = rolloutEvents(rollout, [step]);
    expect(events).toEqual(expected.map((event) => expect.objectContaining(event)));
    expect(announcesEvent(step)).toBe(expected.length > 0);
  });

  it('gives a tripped wave the reason its rollout was paused with', () => {
    const reason = 'wave 1 tripped: 2 of 4 failed (threshold 25%)';
    const events = rolloutEvents(rollout, [
      {
        kind: 'move-wave',
        waveIndex: 0,
        event: WaveEvent.ErrorThresholdCrossed,
        state: WaveState.Tripped,
        changes: { finishedAt: 7 },
      },
      { kind: 'log', message: reason, at: 7 },
      { kind: 'move-rollout', event: RolloutEvent.WaveTripped, state: RolloutState.Paused, reason, at: 7 },
    ]);
    expect(events.map((event) => [event.type, event.data.reason])).toEqual([
      ['wave.tripped', reason],
      ['rollout.paused', reason],
    ]);
  });
});

describe('webhook events from devices', () => {
  it('keys a presence change by the message time, so replicas that all saw it agree', () => {
    const offline = presenceEvent('dev-1', { state: 'offline', reason: 'connection-lost', at: 42 }, 50);
    expect(offline).toEqual({
      type: 'device.offline',
      key: 'device.offline:dev-1:42',
      at: 50,
      data: { deviceId: 'dev-1', reason: 'connection-lost' },
    });
    expect(presenceEvent('dev-1', { state: 'online', reason: 'started', at: 43 }, 50).key).toBe(
      'device.online:dev-1:43',
    );
  });

  it('announces a health problem when it starts, not on every heartbeat that still has it', async () => {
    const previous = new Map<string, Health | null>([
      ['was-fine', health(50, 4_000)],
      ['still-bad', health(5, 4_000)],
      ['first-sample', null],
    ]);
    const samples = [
      { deviceId: 'was-fine', health: health(5), receivedAt: 5_001 },
      { deviceId: 'still-bad', health: health(4), receivedAt: 5_002 },
      { deviceId: 'first-sample', health: health(3), receivedAt: 5_003 },
      { deviceId: 'healthy', health: health(60), receivedAt: 5_004 },
    ];
    const asked: string[] = [];
    const events = await healthProblemEvents(samples, async (deviceId, before) => {
      asked.push(`${deviceId}<${before}`);
      return previous.get(deviceId) ?? null;
    });
    expect(events).toEqual([
      {
        type: 'device.health-problem',
        key: 'device.health-problem:was-fine:5000',
        at: 5_001,
        data: { deviceId: 'was-fine', problem: 'disk 95% full' },
      },
      expect.objectContaining({ key: 'device.health-problem:first-sample:5000' }),
    ]);
    // A healthy heartbeat costs no read.
    expect(asked).toEqual(['was-fine<5000', 'still-bad<5000', 'first-sample<5000']);
  });
});

describe('webhook input', () => {
  it.each(['ftp://example.com/hook', 'example.com/hook', 'javascript:alert(1)', ''])(
    'refuses the URL %j',
    (url) => {
      expect(() => webhookUrl(url)).toThrow(
        expect.objectContaining({
          code: 'invalid-webhook-url',
          message: expect.stringMatching(/^webhook URLs must be http:\/\/ or https:\/\//),
        }),
      );
    },
  );

  it('takes http and https URLs as given', () => {
    expect(webhookUrl('https://hooks.example.com/x?token=1')).toBe('https://hooks.example.com/x?token=1');
    expect(webhookUrl('http://127.0.0.1:8080/')).toBe('http://127.0.0.1:8080/');
  });

  it('refuses an unknown event naming the valid ones, and keeps each event once', () => {
    expect(() => webhookEvents(['device.online', 'device.exploded'])).toThrow(
      expect.objectContaining({
        code: 'invalid-webhook',
        message: expect.stringContaining('device.exploded: use device.online, device.offline'),
      }),
    );
    expect(webhookEvents(['rollout.paused', 'rollout.paused', 'wave.tripped'])).toEqual([
      'rollout.paused',
      'wave.tripped',
    ]);
  });
});
