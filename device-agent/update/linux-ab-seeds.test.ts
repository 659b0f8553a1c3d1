import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import { SimulatedPi, type TestPayload, writeTestPayload } from '../../test/support/simulated-pi.ts';
import { ChunkServerDouble } from './chunk-server.double.ts';
import { transferArtifact } from './artifact-transfer.ts';
import { DeltaAssembler, downloadFiles } from './delta-download.ts';
import { squashfsSeed } from './update-seeds.ts';

const work = mkdtempSync(join(tmpdir(), 'boardfleet-linux-ab-seeds-'));
const signal = new AbortController().signal;

/** A root filesystem as mksquashfs leaves it: the superblock's magic and bytes_used, padded to 4 KiB. */
function squashfs(content: Buffer): Buffer {
  const used = 96 + content.length;
  const image = Buffer.alloc(Math.ceil(used / 4096) * 4096);
  image.write('hsqs', 0, 'latin1');
  image.writeBigUInt64LE(BigInt(used), 40);
  content.copy(image, 96);
  return image;
}

const payloadWith = (version: string, rootfs: Buffer) =>
  writeTestPayload(work, {
    version,
    tamper: (files) => {
      files.rootfs = rootfs;
      files.manifest.rootfs = { sha256: sha256(rootfs), size: rootfs.length };
    },
  });

const manifestOf = (payload: TestPayload): ArtifactManifest => ({
  schemaVersion: 1,
  name: 'pi-minimal',
  version: payload.manifest.version,
  kind: 'linux-image',
  boards: ['rpi-4b'],
  sha256: sha256(readFileSync(payload.file)),
  size: readFileSync(payload.file).length,
  createdAt: 0,
});

describe('linux-ab seeds: the running slot as it is', () => {
  let server: ChunkServerDouble;
  const content = randomBytes(3 * 1024 * 1024);
  const changed = Buffer.concat([
    content.subarray(0, 2_000_000),
    randomBytes(5000),
    content.subarray(2_005_000),
  ]);

  beforeAll(async () => {
    server = await ChunkServerDouble.start();
  });
  afterAll(async () => {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('finds the squashfs by its superblock, padded to 4 KiB, and nothing on a device without one', async () => {
    const device = join(work, 'device');
    const image = squashfs(randomBytes(10_000));
    writeFileSync(device, Buffer.concat([image, randomBytes(50_000)]));
    expect(await squashfsSeed(device, null)).toEqual([{ path: device, start: 0, length: 12_288 }]);
    // A block device's capacity bounds the region (a truncated filesystem).
    expect(await squashfsSeed(device, 8192)).toEqual([{ path: device, start: 0, length: 8192 }]);
    writeFileSync(device, 'rootfs 1.0.0');
    expect(await squashfsSeed(device, null)).toEqual([]);
  });

  it('assembles the next payload from the committed slot and its boot files, leaving both slots alone', async () => {
    const pi = new SimulatedPi(mkdtempSync(join(work, 'pi-')));
    const v2 = await payloadWith('2.0.0', squashfs(content));
    const strategy = pi.strategy();
    await strategy.install(v2.file, manifestOf(v2), signal);
    await strategy.reboot('new');
    pi.performReboot();
    await pi.strategy().commit();
    expect(pi.runningSlot).toBe('b');

    const seeds = await pi.strategy().seeds();
    expect(seeds).toEqual([
      { path: pi.devices.b, start: 0, length: v2.manifest.rootfs.size },
      ...['bcm2711-rpi-4-b.dtb', 'cmdline.txt', 'initrd.img', 'overlays/disable-bt.dtbo', 'vmlinuz'].map(
        (name) => ({
          path: join(pi.bootDir, 'slot-b', name),
          start: 0,
          length: expect.any(Number) as number,
        }),
      ),
    ]);

    const v3 = await payloadWith('3.0.0', squashfs(changed));
    const bytes = readFileSync(v3.file);
    await server.publish('v3', bytes);
    const slots = { a: readFileSync(pi.devices.a), b: readFileSync(pi.devices.b) };
    const downloads = join(pi.dataDir, 'downloads');
    mkdirSync(downloads, { recursive: true });
    const assembler = new DeltaAssembler({
      contentUrl: server.contentUrl('v3'),
      auth: { deviceId: 'pi', secret: 'secret' },
      signal,
      artifact: { sha256: sha256(bytes), size: bytes.length },
      fleetPublicKeyPem: server.fleetPublicKeyPem,
      downloads,
      seeds,
      baseIndex: null,
    });
    await assembler.assemble();

    expect(readFileSync(downloadFiles(downloads, sha256(bytes)).artifact).equals(bytes)).toBe(true);
    expect(assembler.bytes).toBeLessThan(bytes.length / 20);
    expect(readFileSync(pi.devices.a).equals(slots.a)).toBe(true);
    expect(readFileSync(pi.devices.b).equals(slots.b)).toBe(true);
  });

  it('downloads the payload whole when the running slot has lost its contents, and the new slot commits', async () => {
    const pi = new SimulatedPi(mkdtempSync(join(work, 'pi-')));
    const v2 = await payloadWith('2.0.0', squashfs(content));
    await pi.strategy().install(v2.file, manifestOf(v2), signal);
    await pi.strategy().reboot('new');
    pi.performReboot();
    await pi.strategy().commit();
    // The seed slot's contents are gone: its device zeroed, its boot files removed.
    writeFileSync(pi.devices.b, Buffer.alloc(readFileSync(pi.devices.b).length));
    rmSync(join(pi.bootDir, 'slot-b'), { recursive: true });
    const seeds = await pi.strategy().seeds();
    expect(seeds).toEqual([]);

    const v3 = await payloadWith('3.0.0', squashfs(changed));
    await server.publish('v3-whole', readFileSync(v3.file));
    const downloads = join(pi.dataDir, 'downloads');
    mkdirSync(downloads, { recursive: true });
    const transfer = await transferArtifact({
      deployment: server.deployment('v3-whole', { version: '3.0.0', strategy: 'linux-ab' }),
      serverUrl: server.url,
      auth: { deviceId: 'pi', secret: 'secret' },
      fleetPublicKeyPem: server.fleetPublicKeyPem,
      downloads,
      seeds: { sources: seeds, none: 'no seed: the running slot holds no root filesystem' },
      baseIndex: null,
      signal,
      onProgress: () => {},
      logger: pino({ level: 'silent' }),
    });
    expect(transfer).toMatchObject({
      mode: 'full',
      fallback: 'no seed: the running slot holds no root filesystem',
    });
    const artifact = downloadFiles(downloads, sha256(readFileSync(v3.file))).artifact;
    await pi.strategy().install(artifact, manifestOf(v3), signal);
    await pi.strategy().reboot('new');
    pi.performReboot();
    await pi.strategy().commit();
    expect(pi.runningSlot).toBe('a');
    expect(readFileSync(pi.devices.a).subarray(0, v3.manifest.rootfs.size).equals(squashfs(changed))).toBe(
      true,
    );
  });
});
