import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { sha256 as sha256Of } from '../../lib/hash.ts';
import { type S3TestServer, startS3Server } from '../../test/support/s3-server.ts';
import { eventually } from '../../test/support/test-server.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { FolderBlobStore } from './blob-store.repository.ts';
import type { BlobStore } from './blob-store.ts';
import { S3BlobStore } from './s3-blob-store.repository.ts';

/** S3's smallest part, so that a test blob of a few MiB goes up as a multipart upload. */
const PART_BYTES = 5 * 1024 * 1024;

interface StoreKind {
  name: string;
  setUp(): Promise<void>;
  tearDown(): Promise<void>;
  /** A store for the replica whose data dir is `dataDir`; replicas share their storage. */
  open(dataDir: string): Promise<BlobStore>;
}

const folderStore: StoreKind = {
  name: 'the shared data folder',
  setUp: async () => undefined,
  tearDown: async () => undefined,
  open: async (dataDir) => new FolderBlobStore(dataDir),
};

let s3: S3TestServer | undefined;
const s3Store: StoreKind = {
  name: 'an S3 bucket served by s3rver, an S3 protocol server',
  async setUp() {
    s3 = await startS3Server();
    // The SDK's standard credential chain, as in production.
    vi.stubEnv('AWS_ACCESS_KEY_ID', s3.credentials.AWS_ACCESS_KEY_ID);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', s3.credentials.AWS_SECRET_ACCESS_KEY);
  },
  async tearDown() {
    vi.unstubAllEnvs();
    await s3?.dispose();
  },
  open: (dataDir) =>
    S3BlobStore.open({
      bucket: s3!.bucket,
      region: 'us-east-1',
      endpoint: s3!.endpoint,
      forcePathStyle: true,
      incomingDir: join(dataDir, 'artifacts', 'incoming'),
      partBytes: PART_BYTES,
    }),
};

const chunked = (data: Buffer) => Readable.from([data.subarray(0, 10), data.subarray(10)]);
const blob = (size: number) => {
  const content = randomBytes(size);
  return { content, expected: { sha256: sha256Of(content), size } };
};

describe.each([folderStore, s3Store])('a blob store on $name', (kind) => {
  const opened: BlobStore[] = [];
  const dataDirs: string[] = [];
  /** A replica's data dir, and the incoming folder its uploads pass through. */
  const newDataDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-blob-contract-'));
    dataDirs.push(dir);
    return dir;
  };
  const incomingOf = (dataDir: string) => readdirSync(join(dataDir, 'artifacts', 'incoming'));
  const open = async (dataDir: string) => {
    const store = await kind.open(dataDir);
    opened.push(store);
    return store;
  };

  beforeAll(() => kind.setUp(), 60_000);
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((store) => store.close()));
  });
  afterAll(async () => {
    await kind.tearDown();
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('gives back what was written, to the replica that wrote it and to another', async () => {
    const dataDir = newDataDir();
    const [writer, reader] = [await open(dataDir), await open(dataDir)];
    const { content, expected } = blob(64 * 1024);
    expect(await writer.has(expected.sha256)).toBe(false);
    expect(await writer.size(expected.sha256)).toBeNull();

    expect(await writer.write(chunked(content), expected)).toEqual({ stored: true });

    for (const store of [writer, reader]) {
      expect(await store.has(expected.sha256)).toBe(true);
      expect(await store.size(expected.sha256)).toBe(content.length);
      expect((await buffer(await store.read(expected.sha256))).equals(content)).toBe(true);
    }
    expect(incomingOf(dataDir)).toEqual([]);
  });

  it('reads the first bytes, a slice from the middle and the last byte', async () => {
    const store = await open(newDataDir());
    const { content, expected } = blob(10_000);
    await store.write(chunked(content), expected);
    // Not bytes=0-0: s3rver answers that with the whole object (real S3 sends one byte).
    for (const range of [
      { start: 0, end: 9 },
      { start: 1000, end: 4999 },
      { start: 9999, end: 9999 },
    ]) {
      const bytes = await buffer(await store.read(expected.sha256, range));
      expect(bytes.equals(content.subarray(range.start, range.end + 1))).toBe(true);
    }
  });

  it('stores the same content once: writing it again says it was already there', async () => {
    const store = await open(newDataDir());
    const { content, expected } = blob(4096);
    expect(await store.write(chunked(content), expected)).toEqual({ stored: true });
    expect(await store.write(chunked(content), expected)).toEqual({ stored: false });
    expect((await buffer(await store.read(expected.sha256))).equals(content)).toBe(true);
  });

  it('stores a chunk from memory once, and refuses bytes that do not match its sha256', async () => {
    const dataDir = newDataDir();
    const store = await open(dataDir);
    const { content, expected } = blob(16 * 1024);
    expect(await store.writeBytes(content, expected.sha256)).toEqual({ stored: true });
    expect(await store.writeBytes(content, expected.sha256)).toEqual({ stored: false });
    expect((await buffer(await store.read(expected.sha256))).equals(content)).toBe(true);
    const other = randomBytes(100);
    await expect(store.writeBytes(other, expected.sha256)).rejects.toThrow(`sha256 is ${sha256Of(other)}`);
    expect(incomingOf(dataDir)).toEqual([]);
  });

  it('stores a blob larger than one S3 part (11 MiB) whole', async () => {
    const store = await open(newDataDir());
    const { content, expected } = blob(2 * PART_BYTES + 1024 * 1024);
    expect(await store.write(Readable.from([content]), expected)).toEqual({ stored: true });
    expect(await store.size(expected.sha256)).toBe(content.length);
    expect(sha256Of(await buffer(await store.read(expected.sha256)))).toBe(expected.sha256);
    const tail = await buffer(
      await store.read(expected.sha256, { start: PART_BYTES - 2, end: PART_BYTES + 1 }),
    );
    expect(tail.equals(content.subarray(PART_BYTES - 2, PART_BYTES + 2))).toBe(true);
  });

  const { content: refused, expected: refusedBlob } = blob(4096);
  it.each([
    [
      'longer than declared',
      { ...refusedBlob, size: 100 },
      'the upload is larger than the declared 100 bytes',
    ],
    [
      'shorter than declared (a truncated upload)',
      { ...refusedBlob, size: 5000 },
      'the upload has 4096 bytes, not the declared 5000',
    ],
    [
      'with another sha256',
      { sha256: '0'.repeat(64), size: 4096 },
      `the upload's sha256 is ${refusedBlob.sha256}, not the declared ${'0'.repeat(64)}`,
    ],
  ])('refuses a body %s and keeps nothing of it', async (_label, declared, message) => {
    const dataDir = newDataDir();
    const store = await open(dataDir);
    await expect(store.write(chunked(refused), declared)).rejects.toThrow(message);
    expect(await store.has(declared.sha256)).toBe(false);
    expect(await store.has(refusedBlob.sha256)).toBe(false);
    expect(incomingOf(dataDir)).toEqual([]);
  });

  it('keeps nothing of a body that breaks off mid-upload', async () => {
    const dataDir = newDataDir();
    const store = await open(dataDir);
    const { content, expected } = blob(8192);
    const body = new PassThrough();
    const writing = store.write(body, expected);
    body.write(content.subarray(0, 4096));
    body.destroy(new Error('connection reset by the uploader'));
    await expect(writing).rejects.toThrow('connection reset by the uploader');
    expect(await store.has(expected.sha256)).toBe(false);
    expect(incomingOf(dataDir)).toEqual([]);
  });

  it('takes the same blob written at once by two replicas, four times, and keeps it whole', async () => {
    const dataDir = newDataDir();
    const replicas = [await open(dataDir), await open(dataDir)];
    const { content, expected } = blob(256 * 1024);
    const results = await Promise.all(
      [0, 1, 2, 3].map((i) => replicas[i % 2]!.write(chunked(content), expected)),
    );
    expect(results.some((result) => result.stored)).toBe(true);
    for (const store of replicas) {
      expect((await buffer(await store.read(expected.sha256))).equals(content)).toBe(true);
    }
    expect(incomingOf(dataDir)).toEqual([]);
  });

  it('lets another replica start while one is mid-upload without breaking that upload', async () => {
    const dataDir = newDataDir();
    const first = await open(dataDir);
    const { content, expected } = blob(128 * 1024);
    const body = new PassThrough();
    const writing = first.write(body, expected);
    body.write(content.subarray(0, 64 * 1024));
    await eventually(
      'the upload has its file in the incoming folder',
      () => incomingOf(dataDir).length === 1,
    );

    const second = await open(dataDir);
    expect(incomingOf(dataDir)).toHaveLength(1);
    body.end(content.subarray(64 * 1024));

    expect(await writing).toEqual({ stored: true });
    expect((await buffer(await second.read(expected.sha256))).equals(content)).toBe(true);
  });

  it('answers a read of content it does not hold with a not-found error', async () => {
    const store = await open(newDataDir());
    const absent = sha256Of(randomBytes(16));
    const error = await store.read(absent).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BoardfleetError);
    expect(error).toMatchObject({ code: 'not-found', message: expect.stringContaining(absent) });
  });
});
