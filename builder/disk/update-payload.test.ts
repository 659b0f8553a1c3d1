import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PayloadManifest } from '../../protocol/linux-ab-layout.ts';
import { EPOCH, pseudoRandomBytes, scratchDirectory } from './disk.fixtures.ts';
import {
  describeUpdatePayload,
  extractUpdatePayload,
  readUpdatePayloadManifest,
  writeUpdatePayload,
} from './update-payload.ts';

const ROOTFS_SIZE = 3 * 1024 * 1024 + 123;

describe('update payload', () => {
  let work: string;
  let manifest: PayloadManifest;
  let payload: string;
  let written: { size: number; sha256: string };

  beforeAll(async () => {
    work = await scratchDirectory('payload');
    await writeFile(join(work, 'rootfs.squashfs'), pseudoRandomBytes(ROOTFS_SIZE, 9));
    const boot = join(work, 'boot');
    await mkdir(join(boot, 'overlays'), { recursive: true });
    await writeFile(join(boot, 'vmlinuz'), pseudoRandomBytes(70_001, 10));
    await writeFile(join(boot, 'initrd.img'), pseudoRandomBytes(5_000, 11));
    await writeFile(join(boot, 'cmdline.txt'), 'console=ttyAMA0 root=@ROOT@ boardfleet.slot=@SLOT@\n');
    await writeFile(join(boot, 'overlays', 'disable-bt.dtbo'), pseudoRandomBytes(900, 12));
    manifest = await describeUpdatePayload({
      board: 'rpi-4b',
      version: '1.2.3',
      rootfsFile: join(work, 'rootfs.squashfs'),
      bootDir: boot,
    });
    payload = join(work, 'payload.tar');
    written = await writeUpdatePayload({
      out: payload,
      manifest,
      rootfsFile: join(work, 'rootfs.squashfs'),
      bootDir: boot,
      epoch: EPOCH,
    });
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('describes every boot file and the root filesystem by size and sha256', () => {
    expect(Object.keys(manifest.bootFiles).sort()).toEqual([
      'cmdline.txt',
      'initrd.img',
      'overlays/disable-bt.dtbo',
      'vmlinuz',
    ]);
    expect(manifest.rootfs.size).toBe(ROOTFS_SIZE);
    expect(manifest.bootFiles['vmlinuz']!.size).toBe(70_001);
  });

  it('is a POSIX tar in the contract order, root-owned, one mtime (as GNU tar reads it)', async () => {
    expect((await stat(payload)).size).toBe(written.size);
    const { stdout } = await promisify(execFile)('tar', ['--numeric-owner', '--utc', '-tvf', payload]);
    const lines = stdout
      .trim()
      .split('\n')
      .map((line) => line.split(/\s+/));
    expect(lines.map((columns) => columns[5])).toEqual([
      'payload.json',
      'rootfs.squashfs',
      'boot/',
      'boot/cmdline.txt',
      'boot/initrd.img',
      'boot/overlays/',
      'boot/overlays/disable-bt.dtbo',
      'boot/vmlinuz',
    ]);
    for (const columns of lines) {
      expect(columns[1]).toBe('0/0');
      expect(`${columns[3]} ${columns[4]}`).toBe('2023-11-14 22:13');
    }
  });

  it('parses strictly with node-tar, which the agent reads payloads with', async () => {
    const seen: string[] = [];
    const warnings: string[] = [];
    await tar.t({
      file: payload,
      strict: true,
      onwarn: (_code, message) => warnings.push(String(message)),
      onReadEntry: (entry) => {
        seen.push(`${entry.path} ${entry.size}`);
      },
    });
    expect(warnings).toEqual([]);
    expect(seen[1]).toBe(`rootfs.squashfs ${ROOTFS_SIZE}`);
    expect(seen).toHaveLength(8);
  });

  it('is written the same way twice', async () => {
    const again = await writeUpdatePayload({
      out: join(work, 'again.tar'),
      manifest,
      rootfsFile: join(work, 'rootfs.squashfs'),
      bootDir: join(work, 'boot'),
      epoch: EPOCH,
    });
    expect(again.sha256).toBe(written.sha256);
  });

  it('gives its manifest back from the first entry', async () => {
    expect(await readUpdatePayloadManifest(payload)).toEqual(manifest);
  });

  it('streams the root filesystem to the handler and writes the boot files', async () => {
    const chunkSizes: number[] = [];
    const slot = join(work, 'slot-b.img');
    const result = await extractUpdatePayload(payload, {
      bootDir: join(work, 'out', 'slot-b'),
      onRootfs: async (stream: Readable, expected) => {
        expect(expected).toEqual(manifest.rootfs);
        stream.on('data', (chunk: Buffer) => chunkSizes.push(chunk.length));
        await pipeline(stream, createWriteStream(slot));
      },
    });
    expect(result).toEqual(manifest);
    expect((await readFile(slot)).equals(await readFile(join(work, 'rootfs.squashfs')))).toBe(true);
    expect(chunkSizes.length).toBeGreaterThan(1);
    expect(Math.max(...chunkSizes)).toBeLessThanOrEqual(1024 * 1024);
    for (const name of Object.keys(manifest.bootFiles)) {
      expect(
        (await readFile(join(work, 'out', 'slot-b', name))).equals(await readFile(join(work, 'boot', name))),
      ).toBe(true);
    }
  });

  it('refuses a payload whose root filesystem was altered, after streaming it', async () => {
    const damaged = join(work, 'damaged.tar');
    await writeFile(damaged, await readFile(payload));
    const handle = await open(damaged, 'r+');
    // Inside rootfs.squashfs: past the manifest's header and data, and the rootfs header.
    await handle.write(Buffer.from([0xff ^ (await readFile(payload))[4096]!]), 0, 1, 4096);
    await handle.close();
    await expect(
      extractUpdatePayload(damaged, {
        bootDir: join(work, 'out', 'damaged'),
        onRootfs: (stream) => pipeline(stream, createWriteStream(join(work, 'damaged-slot.img'))),
      }),
    ).rejects.toMatchObject({
      code: 'payload-corrupt',
      message: expect.stringMatching(/rootfs\.squashfs has sha256 [0-9a-f]{64}; the manifest says/),
    });
  });

  it('fails when the handler stops reading the root filesystem early', async () => {
    await expect(
      extractUpdatePayload(payload, {
        bootDir: join(work, 'out', 'early'),
        onRootfs: async (stream) => {
          await new Promise((resolve) => stream.once('data', resolve));
        },
      }),
    ).rejects.toMatchObject({ code: 'payload-rootfs-unread' });
  });

  it('will not write a payload that disagrees with its manifest, and leaves no file behind', async () => {
    const wrong: PayloadManifest = {
      ...manifest,
      bootFiles: {
        ...manifest.bootFiles,
        vmlinuz: { ...manifest.bootFiles['vmlinuz']!, sha256: '0'.repeat(64) },
      },
    };
    const out = join(work, 'wrong.tar');
    await expect(
      writeUpdatePayload({
        out,
        manifest: wrong,
        rootfsFile: join(work, 'rootfs.squashfs'),
        bootDir: join(work, 'boot'),
      }),
    ).rejects.toMatchObject({
      code: 'payload-mismatch',
      message: expect.stringMatching(/boot\/vmlinuz is 70001 bytes with sha256/),
    });
    await expect(stat(out)).rejects.toThrow(/ENOENT/);
    const missing = {
      ...manifest,
      bootFiles: { ...manifest.bootFiles, 'fixup4.dat': { sha256: '1'.repeat(64), size: 1 } },
    };
    await expect(
      writeUpdatePayload({
        out,
        manifest: missing,
        rootfsFile: join(work, 'rootfs.squashfs'),
        bootDir: join(work, 'boot'),
      }),
    ).rejects.toThrow(/boot files missing from .*: fixup4\.dat/);
  });

  it('refuses a tar that does not start with payload.json', async () => {
    const other = join(work, 'other.tar');
    await tar.c({ file: other, cwd: work, portable: true }, ['rootfs.squashfs']);
    await expect(readUpdatePayloadManifest(other)).rejects.toThrow(
      /the first entry is rootfs\.squashfs, not payload\.json/,
    );
  });
});
