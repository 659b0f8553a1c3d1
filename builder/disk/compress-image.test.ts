import { execFile } from 'node:child_process';
import { open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compressImage } from './compress-image.ts';
import { MIB, pseudoRandomBytes, scratchDirectory } from './disk.fixtures.ts';
import { createSparseFile } from './file-tree.ts';

const run = promisify(execFile);

describe('image compression', () => {
  let work: string;
  let image: string;

  beforeAll(async () => {
    work = await scratchDirectory('compress');
    image = join(work, 'disk.img');
    // Mostly holes, like a fresh image: 16 MiB with 1 MiB of data in two places.
    await createSparseFile(image, 16 * MIB);
    const handle = await open(image, 'r+');
    await handle.write(pseudoRandomBytes(512 * 1024, 5), 0, 512 * 1024, MIB);
    await handle.write(Buffer.alloc(512 * 1024, 'boardfleet '), 0, 512 * 1024, 9 * MIB);
    await handle.close();
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it.each([
    ['zstd', '.zst', ['zstd', ['-d', '-q', '-c']]],
    ['xz', '.xz', ['xz', ['-d', '-c']]],
  ] as const)(
    '%s: the same bytes twice, and the image back when decompressed',
    async (format, suffix, [tool, args]) => {
      const first = await compressImage(image, join(work, `one${suffix}`), { format });
      const second = await compressImage(image, join(work, `two${suffix}`), { format });
      expect(second.sha256).toBe(first.sha256);
      expect(first.size).toBeLessThan(700 * 1024);
      const { stdout } = await run(tool, [...args, first.file], { encoding: 'buffer', maxBuffer: 32 * MIB });
      expect(stdout.equals(await readFile(image))).toBe(true);
    },
  );
});
