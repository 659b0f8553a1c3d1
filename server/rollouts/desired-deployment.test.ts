import { describe, expect, it } from 'vitest';
import type { ArtifactRecord } from '../artifacts/artifact.repository.ts';
import type { DeviceRecord } from '../devices/device.repository.ts';
import {
  artifactIdsOf,
  chooseDelivery,
  type Delivery,
  deploymentFromArtifact,
  rollbackOrderId,
  rollbackTo,
} from './desired-deployment.ts';

function artifact(id: string, kind: ArtifactRecord['kind'], boards: string[]): ArtifactRecord {
  return {
    id,
    name: id,
    version: '1.0.0',
    kind,
    boards,
    sha256: id.padEnd(64, '0').replace(/[^0-9a-f]/g, 'a'),
    size: 10,
    createdAt: 0,
    manifest: '{}',
    signature: 'sig',
  };
}

const APP = artifact('app', 'app-bundle', ['rpi-4b']);
const IMAGE = artifact('image', 'linux-image', ['rpi-4b']);
const UNO_FIRMWARE = artifact('f0', 'mcu-firmware', ['uno']);
const NANO_FIRMWARE = artifact('f1', 'mcu-firmware', ['nano']);

/** A gateway (its own board) with boards attached on ports, as its inventory says. */
function device(
  own: string | null,
  attached: Array<string | null> = [],
  extra: Partial<DeviceRecord> = {},
): DeviceRecord {
  return {
    id: 'dev-1',
    name: 'gateway',
    board: own,
    tags: [],
    createdAt: 0,
    revokedAt: null,
    online: true,
    presenceChangedAt: null,
    lastSeenAt: null,
    inventory: {
      board: own ?? 'laptop',
      os: 'Debian',
      kernel: '6.1',
      architecture: 'arm64',
      agentVersion: '1.0.0',
      hostname: 'gateway',
      slots: [],
      attachedBoards: attached.map((board, index) => ({
        port: `/dev/ttyACM${index}`,
        board,
        firmware: null,
        firmwareVersion: null,
      })),
      at: 0,
    },
    runningVersion: null,
    desiredVersion: null,
    healthProblem: null,
    ...extra,
  };
}

/** What a delivery names, by artifact id, for a table. */
function named(delivery: Delivery): { artifact: string; parts: string[] } | { failure: string } {
  return 'failure' in delivery
    ? delivery
    : { artifact: delivery.artifact.id, parts: delivery.parts.map((part) => part.id) };
}

const release = (artifacts: Record<string, ArtifactRecord>) => ({
  byBoard: new Map(Object.entries(artifacts)),
  carriesFirmware: Object.values(artifacts).some((a) => a.kind === 'mcu-firmware'),
});

describe('what a notified device gets from a release (chooseDelivery)', () => {
  it.each([
    {
      name: 'an app-only release: the app alone',
      device: device('rpi-4b', ['uno']),
      release: release({ 'rpi-4b': APP }),
      expected: { artifact: 'app', parts: [] },
    },
    {
      name: 'a firmware-only release to a gateway without an artifact of its own: the firmware',
      device: device('rpi-4b', ['uno']),
      release: release({ uno: UNO_FIRMWARE }),
      expected: { artifact: 'f0', parts: [] },
    },
    {
      name: 'a composite release to a gateway with one attached Uno: the app and the Uno firmware',
      device: device('rpi-4b', ['uno']),
      release: release({ 'rpi-4b': APP, uno: UNO_FIRMWARE }),
      expected: { artifact: 'app', parts: ['f0'] },
    },
    {
      name: 'a variant nano:old-bootloader attached: the firmware built for nano',
      device: device('rpi-4b', ['nano:old-bootloader']),
      release: release({ 'rpi-4b': APP, nano: NANO_FIRMWARE }),
      expected: { artifact: 'app', parts: ['f1'] },
    },
    {
      name: 'two boards attached that one firmware serves: that firmware once',
      device: device('rpi-4b', ['uno', 'uno']),
      release: release({ 'rpi-4b': APP, uno: UNO_FIRMWARE }),
      expected: { artifact: 'app', parts: ['f0'] },
    },
    {
      name: 'an attached board type the release has no firmware for: a failure naming it and its port',
      device: device('rpi-4b', ['uno', 'nano']),
      release: release({ 'rpi-4b': APP, uno: UNO_FIRMWARE }),
      expected: { failure: 'release gw-2 has no firmware for the nano attached on /dev/ttyACM1' },
    },
    {
      name: 'a linux-image with firmware: a failure, the two cannot roll back together',
      device: device('rpi-4b', ['uno']),
      release: release({ 'rpi-4b': IMAGE, uno: UNO_FIRMWARE }),
      expected: {
        failure:
          'release gw-2 pairs a linux-image with firmware: an A/B image switch reboots the device, so the two cannot be installed and rolled back together',
      },
    },
    {
      name: 'a composite release to a device with no board attached: the app alone',
      device: device('rpi-4b'),
      release: release({ 'rpi-4b': APP, uno: UNO_FIRMWARE }),
      expected: { artifact: 'app', parts: [] },
    },
    {
      name: 'a composite release to a device whose attached board is not identified: the app alone',
      device: device('rpi-4b', [null]),
      release: release({ 'rpi-4b': APP, uno: UNO_FIRMWARE }),
      expected: { artifact: 'app', parts: [] },
    },
    {
      name: 'a release without an artifact for the device or its boards: a failure naming its board',
      device: device('rpi-4b', ['uno']),
      release: release({ nano: NANO_FIRMWARE }),
      expected: { failure: 'release gw-2 has no artifact for board rpi-4b' },
    },
    {
      name: 'a revoked device: nothing',
      device: device('rpi-4b', ['uno'], { revokedAt: 5 }),
      release: release({ 'rpi-4b': APP, uno: UNO_FIRMWARE }),
      expected: { failure: 'device revoked' },
    },
    {
      name: 'a device deleted since the plan: nothing',
      device: undefined,
      release: release({ 'rpi-4b': APP }),
      expected: { failure: 'device revoked' },
    },
  ])('$name', ({ device: record, release: { byBoard, carriesFirmware }, expected }) => {
    expect(named(chooseDelivery(record, byBoard, { name: 'gw-2', carriesFirmware }))).toEqual(expected);
  });
});

describe('composite deployments and their rollback', () => {
  const composite = deploymentFromArtifact(APP, 'dep-1', [UNO_FIRMWARE]);

  it('carries the other artifacts as parts, each pointing at its own content', () => {
    expect(composite).toMatchObject({ id: 'dep-1', strategy: 'app-bundle', artifact: 'app' });
    expect(composite.parts).toEqual([
      expect.objectContaining({
        strategy: 'mcu-serial',
        artifact: 'f0',
        url: '/api/v1/artifacts/f0/content',
      }),
    ]);
    expect(artifactIdsOf(composite)).toEqual(['app', 'f0']);
    expect('parts' in deploymentFromArtifact(APP, 'dep-2')).toBe(false);
  });

  it('sends every part back, each with the rollback order of its own artifact', () => {
    const back = rollbackTo('ro-1', composite);
    expect(back.rollbackOrder).toBe(rollbackOrderId('ro-1', composite));
    expect(back.parts?.map((part) => part.rollbackOrder)).toEqual([
      rollbackOrderId('ro-1', composite.parts![0]!),
    ]);
    expect(back.rollbackOrder).not.toBe(back.parts?.[0]?.rollbackOrder);
    expect(artifactIdsOf(back)).toEqual(['app', 'f0']);
  });
});
