import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import { type ChunkIndex, chunkIndexSha256, encodeChunkIndex } from '../../protocol/chunk-index.ts';
import { ChunkServerDouble } from './chunk-server.double.ts';
import {
  type AssemblyStep,
  DeltaAssembler,
  type DeltaAssemblyRequest,
  downloadFiles,
} from './delta-download.ts';
import type { SeedSource } from './update-seeds.ts';

const work = mkdtempSync(join(tmpdir(), 'boardfleet-delta-'));
const auth = { deviceId: 'dev-1', secret: 'secret' };

/** v2 is v1 with six places changed (some bytes replaced, some inserted), spread over it. */
const v1 = randomBytes(2 * 1024 * 1024);
const v2 = (() => {
  const parts: Buffer[] = [];
  let at = 0;
  for (let n = 1; n <= 6; n++) {
    const place = Math.floor((v1.length * n) / 7);
    parts.push(v1.subarray(at, place), randomBytes(3000));
    at = place + (n % 2 === 0 ? 3000 : 0);
  }
  parts.push(v1.subarray(at));
  return Buffer.concat(parts);
})();

describe('delta assembly against a chunk server double', () => {
  let server: ChunkServerDouble;
  let index1: ChunkIndex;
  let index2: ChunkIndex;
  let seedFile: string;
  let downloads: string;

  beforeAll(async () => {
    server = await ChunkServerDouble.start();
    index1 = await server.publish('v1', v1);
    index2 = await server.publish('v2', v2);
    await server.publish('other', randomBytes(300_000));
  });
  afterAll(async () => {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    const dir = mkdtempSync(join(work, 'case-'));
    seedFile = join(dir, 'seed.artifact');
    writeFileSync(seedFile, v1);
    downloads = join(dir, 'downloads');
    mkdirSync(downloads);
    server.requests.length = 0;
    server.faults.corrupt.clear();
    server.faults.foreign.clear();
    Object.assign(server.faults, { truncateAnswers: 0, badSignature: false, indexOf: null, noIndex: false });
  });

  const files = () => downloadFiles(downloads, sha256(v2));
  const seed = (): SeedSource => ({ path: seedFile, start: 0, length: v1.length });
  const requestFor = (overrides: Partial<DeltaAssemblyRequest> = {}): DeltaAssemblyRequest => ({
    contentUrl: server.contentUrl('v2'),
    auth,
    signal: new AbortController().signal,
    artifact: { sha256: sha256(v2), size: v2.length },
    fleetPublicKeyPem: server.fleetPublicKeyPem,
    downloads,
    seeds: [seed()],
    baseIndex: null,
    ...overrides,
  });
  const assembler = (overrides: Partial<DeltaAssemblyRequest> = {}) =>
    new DeltaAssembler(requestFor(overrides));
  /** Positions of v2's chunks that v1 does not hold. */
  const changed = async () => {
    const inV1 = new Set(index1.chunks.map((chunk) => chunk.sha256));
    return index2.chunks.flatMap((chunk, position) => (inV1.has(chunk.sha256) ? [] : [position]));
  };
  const fetchedPositions = () =>
    server.requests
      .filter((request) => request.path.endsWith('/chunks'))
      .flatMap((request) => request.positions);
  const assembled = () => readFileSync(files().artifact);
  const leftovers = () => readdirSync(downloads).filter((name) => name.includes('.assembling'));

  it('copies what the seed holds, fetches only the changed chunks, and ends with the signed bytes', async () => {
    const progress: number[] = [];
    const stats = await assembler({ onProgress: (placed) => progress.push(placed) }).assemble();

    expect(assembled().equals(v2)).toBe(true);
    const missing = await changed();
    expect(missing.length).toBeGreaterThan(5);
    expect(fetchedPositions().sort((a, b) => a - b)).toEqual(missing);
    expect(stats).toMatchObject({
      chunks: index2.chunks.length,
      copiedChunks: index2.chunks.length - missing.length,
      fetchedChunks: missing.length,
      resumedChunks: 0,
    });
    expect(server.answeredBytes()).toBeLessThan(v2.length / 4);
    expect(progress.at(-1)).toBe(v2.length);
    expect(leftovers()).toEqual([]);
    // The verified index stays beside the artifact: the base of the next update once committed.
    expect(readFileSync(files().index).length).toBe(66 + 36 * index2.chunks.length);
  });

  it('counts the bytes that crossed the network: the index answer and the compressed chunk bodies', async () => {
    const delta = assembler();
    await delta.assemble();
    expect(delta.bytes).toBe(server.answeredBytes());
    expect(delta.bytes).toBeGreaterThan(server.answeredBytes('chunk-index'));
  });

  it('sends the sha256 of the index it holds and rebuilds the new index from a delta of it', async () => {
    const base = encodeChunkIndex(index1);
    await assembler({ baseIndex: base }).assemble();
    const asked = server.requests.find((r) => r.path.endsWith('/chunk-index'));
    expect(asked?.base).toBe(sha256(base));
    expect(asked?.answered).toBeLessThan(1000);
    expect(readFileSync(files().index).length).toBe(66 + 36 * index2.chunks.length);
    expect(assembled().equals(v2)).toBe(true);
  });

  it('refetches a corrupt chunk alone, once, and accepts it when it then arrives intact', async () => {
    const [position] = await changed();
    server.faults.corrupt.set(position as number, 1);
    await assembler().assemble();
    expect(assembled().equals(v2)).toBe(true);
    const alone = server.requests.filter((r) => r.positions.length === 1 && r.positions[0] === position);
    expect(alone).toHaveLength(1);
  });

  it.each([
    ['corrupt', (position: number) => server.faults.corrupt.set(position, 2)],
    ['foreign', (position: number) => server.faults.foreign.add(position)],
  ])('gives the delta up when a %s chunk arrives twice, leaving nothing behind', async (_kind, fault) => {
    const [position] = await changed();
    fault(position as number);
    await expect(assembler().assemble()).rejects.toMatchObject({
      code: 'chunk-mismatch',
      message: expect.stringMatching(
        new RegExp(
          `^chunk ${position} \\(${index2.chunks[position as number]?.sha256}.*did not arrive intact twice: it arrived with another sha256`,
        ),
      ),
    });
    expect(existsSync(files().artifact)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  it('asks again for the chunks of an answer cut half way, and ends with the signed bytes', async () => {
    server.faults.truncateAnswers = 1;
    await assembler().assemble();
    expect(assembled().equals(v2)).toBe(true);
    expect(fetchedPositions().length).toBeGreaterThan((await changed()).length);
  });

  it('refuses an index whose signature is not the fleet key, and one of another artifact', async () => {
    server.faults.badSignature = true;
    await expect(assembler().assemble()).rejects.toMatchObject({
      code: 'chunk-index-invalid',
      message: expect.stringContaining('signature does not match the fleet key'),
    });
    server.faults.badSignature = false;
    server.faults.indexOf = 'other';
    await expect(assembler().assemble()).rejects.toMatchObject({
      code: 'chunk-index-invalid',
      message: expect.stringContaining(`not of the signed ${sha256(v2)}`),
    });
    expect(fetchedPositions()).toEqual([]);
    expect(existsSync(files().index)).toBe(false);
  });

  it("takes only the index the fleet's TUF targets sign, when the device trusts a TUF root", async () => {
    const signed = encodeChunkIndex(index2);
    const signedByTargets = { sha256: chunkIndexSha256(signed), length: signed.length };
    await assembler({ signedChunkIndex: signedByTargets }).assemble();
    expect(assembled().equals(v2)).toBe(true);
    for (const done of [files().artifact, files().index]) rmSync(done);
    await expect(
      assembler({ signedChunkIndex: { ...signedByTargets, sha256: 'ab'.repeat(32) } }).assemble(),
    ).rejects.toMatchObject({
      code: 'chunk-index-invalid',
      message: expect.stringContaining(`the fleet's TUF targets sign ${'ab'.repeat(32)}`),
    });
    await expect(assembler({ signedChunkIndex: null }).assemble()).rejects.toMatchObject({
      code: 'delta-unavailable',
      message: expect.stringContaining('TUF targets list no chunk index'),
    });
  });

  it('says when the server has no chunk index', async () => {
    server.faults.noIndex = true;
    await expect(assembler().assemble()).rejects.toMatchObject({
      code: 'delta-unavailable',
      message: expect.stringContaining('HTTP 404'),
    });
  });

  it('fetches what a seed no longer holds when it changed after it was chunked', async () => {
    const onStep = (step: AssemblyStep) => {
      if (step === 'seeds')
        writeFileSync(seedFile, Buffer.concat([v1.subarray(0, 500_000), randomBytes(v1.length - 500_000)]));
    };
    const stats = await assembler({ onStep }).assemble();
    expect(assembled().equals(v2)).toBe(true);
    expect(stats.copiedChunks).toBeGreaterThan(0);
    expect(stats.fetchedChunks).toBeGreaterThan((await changed()).length);
  });

  it('gives up when no seed is left to copy from', async () => {
    await expect(
      assembler({ seeds: [{ path: join(work, 'gone'), start: 0, length: 100 }] }).assemble(),
    ).rejects.toMatchObject({
      code: 'delta-unavailable',
      message: expect.stringContaining('none of the 1 seed(s)'),
    });
  });

  it('fails on a full disk with the reason, leaving the seed as it was', async () => {
    symlinkSync('/dev/full', files().assembling);
    await expect(assembler().assemble()).rejects.toMatchObject({
      code: 'download-failed',
      message: expect.stringMatching(/^writing .*\.assembling failed: ENOSPC: no space left on device/),
    });
    expect(readFileSync(seedFile).equals(v1)).toBe(true);
    expect(leftovers()).toEqual([]);
  });

  describe('killed at each step, then started again', () => {
    let cleanBytes: number;

    beforeAll(async () => {
      const clean = assembler({ downloads: mkdtempSync(join(work, 'clean-')), batchChunks: 2 });
      await clean.assemble();
      cleanBytes = clean.bytes;
    });

    it.each<[AssemblyStep, number]>([
      ['index', 1],
      ['seeds', 1],
      ['copied', 1],
      ['fetched-batch', 1],
      ['fetched-batch', 3],
      ['verified', 1],
    ])(
      'resumes after a kill at %s (occurrence %i) and fetches only what it lacked',
      async (at, occurrence) => {
        const killed = new AbortController();
        let seen = 0;
        const first = assembler({
          batchChunks: 2,
          parallelRequests: 1,
          signal: killed.signal,
          onStep: (step) => {
            if (step === at && ++seen === occurrence) killed.abort(new Error(`killed at ${step}`));
          },
        });
        await expect(first.assemble()).rejects.toThrow(`killed at ${at}`);
        expect(existsSync(files().artifact)).toBe(false);

        const second = assembler({ batchChunks: 2 });
        await second.assemble();
        expect(assembled().equals(v2)).toBe(true);
        expect(leftovers()).toEqual([]);
        // The index is never fetched again, nor any chunk the first run had written.
        expect(second.bytes).toBeLessThan(cleanBytes - server.answeredBytes('chunk-index') / 2);
        if (at === 'verified') expect(second.bytes).toBe(0);
        if (at === 'fetched-batch') expect(second.bytes).toBeLessThan(cleanBytes - first.bytes / 2);
      },
    );
  });
});
