import { describe, expect, it } from 'vitest';
import type { ArtifactChunks } from '../../protocol/api/artifacts.ts';
import { chunksLine } from './artifact.command.ts';

const chunks: ArtifactChunks = {
  count: 4142,
  indexSha256: 'a'.repeat(64),
  averageBytes: 17_408,
  newChunks: 3,
  newBytes: 64_410,
  previousVersion: '1.0.0',
  sharedPercent: 99.9,
};
const MIB = 1024 * 1024;

describe("the chunks line of 'artifact show'", () => {
  it.each([
    [
      'a new version',
      { kind: 'linux-image', size: 70 * MIB, chunks },
      'chunks: 4142 (avg 17.0 KiB), 3 new (62.9 KiB); 99.9 % shared with 1.0.0',
    ],
    [
      'a first version',
      {
        kind: 'app-bundle',
        size: 70 * MIB,
        chunks: { ...chunks, previousVersion: null, sharedPercent: null },
      },
      'chunks: 4142 (avg 17.0 KiB), 3 new (62.9 KiB); no earlier version with chunks',
    ],
    [
      'a build log',
      { kind: 'build-log', size: MIB, chunks: null },
      'chunks: none (build-log is not deployed to devices)',
    ],
    [
      'a small firmware',
      { kind: 'mcu-firmware', size: 30_000, chunks: null },
      'chunks: none (smaller than 256.0 KiB: devices download it whole)',
    ],
    [
      'an image stored without chunks',
      { kind: 'linux-image', size: 70 * MIB, chunks: null },
      'chunks: none (stored before delta updates, or the server runs with BOARDFLEET_DELTA_UPDATES=off)',
    ],
  ] as const)('of %s', (_label, artifact, line) => {
    expect(chunksLine(artifact)).toBe(line);
  });
});
