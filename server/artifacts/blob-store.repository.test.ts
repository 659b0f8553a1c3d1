import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { sha256 as sha256Of } from '../../lib/hash.ts';
import { BlobStoreRepository } from './blob-store.repository.ts';

const chunked = (data: Buffer) => Readable.from([data.subarray(0, 10), data.subarray(10)]);

describe('blob store', () => {
  const content = randomBytes(4096);
  const sha256 = sha256Of(content);

  it('stores content under its sha256 once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-blobs-'));
    const store = new BlobStoreRepository(dir);
    expect(await store.write(chunked(content), { sha256, size: content.length })).toEqual({ stored: true });
    expect(await store.write(chunked(content), { sha256, size: content.length })).toEqual({ stored: false });
    expect(readFileSync(store.pathOf(sha256)).equals(content)).toBe(true);
  });

  it.each([
    ['longer than declared', { sha256, size: 100 }, 'the upload is larger than the declared 100 bytes'],
    [
      'shorter than declared (a truncated upload)',
      { sha256, size: 5000 },
      'the upload has 4096 bytes, not the declared 5000',
    ],
    [
      'with another sha256',
      { sha256: '0'.repeat(64), size: 4096 },
      `the upload's sha256 is ${sha256}, not the declared ${'0'.repeat(64)}`,
    ],
  ])('rejects a stream %s and leaves no file behind', async (_label, expected, message) => {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-blobs-'));
    const store = new BlobStoreRepository(dir);
    await expect(store.write(chunked(content), expected)).rejects.toThrow(message);
    expect(readdirSync(join(dir, 'artifacts', 'incoming'))).toEqual([]);
    expect(readdirSync(join(dir, 'artifacts', 'sha256'))).toEqual([]);
  });
});
