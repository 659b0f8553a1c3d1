import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BuildJob, BuildState } from '../../protocol/api/builds.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { verifyManifest } from '../../protocol/manifest-signature.ts';
import { ArtifactRepository } from '../artifacts/artifact.repository.ts';
import { ArtifactService } from '../artifacts/artifact.service.ts';
import { FolderBlobStore } from '../artifacts/blob-store.repository.ts';
import { SigningKeyRepository } from '../artifacts/signing-key.repository.ts';
import { type Clock, systemClock } from '../common/clock.ts';
import { ReplicaRegistry } from '../cluster/replica-registry.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { BuildJobRepository } from './build-job.repository.ts';
import { type BuildLogEvent, BuildQueueService } from './build-queue.service.ts';
import type { BuildRequest, BuiltFile } from '../../builder/build-runner.ts';
import { validateBuildRequest } from '../../builder/builder.ts';
import { RECIPES_DIRECTORY } from '../../builder/recipe/recipe.ts';
import { scriptedBuildRunnerDouble } from '../../test/support/build-runner-double.ts';

/**
 * The real repository, except that claiming the next job waits while `hold` is pending: the
 * moment a race needs.
 */
class HeldBuildJobRepository extends BuildJobRepository {
  hold: Promise<void> = Promise.resolve();
  /** How many claims have waited on the hold. */
  holding = 0;

  override async claimNext(replica: string, at: number): Promise<BuildJob | null> {
    this.holding++;
    await this.hold;
    return super.claimNext(replica, at);
  }
}

interface Harness {
  dir: string;
  db: Database;
  queue: BuildQueueService;
  double: ReturnType<typeof scriptedBuildRunnerDouble>;
  artifacts: ArtifactRepository;
  signingKey: SigningKeyRepository;
  logs: BuildLogEvent[];
  /** Another queue on the same database and log folder: the server after a restart. */
  restart(): Promise<Harness>;
}

const opened: Array<{ dir: string; db: Database; queue: BuildQueueService }> = [];

async function openQueue(
  options: {
    concurrency?: number;
    clock?: Clock;
    dir?: string;
    db?: Database;
    jobs?: (db: Database) => BuildJobRepository;
  } = {},
): Promise<Harness> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'boardfleet-build-queue-'));
  const db = options.db ?? openDatabase(`sqlite:${join(dir, 'test.sqlite')}`);
  if (!options.db) await migrateToLatest(db);
  const clock = options.clock ?? systemClock;
  const artifacts = new ArtifactRepository(db);
  const signingKey = SigningKeyRepository.load(dir, null);
  const double = scriptedBuildRunnerDouble();
  const queue = new BuildQueueService({
    jobs: options.jobs?.(db) ?? new BuildJobRepository(db),
    artifacts: new ArtifactService(artifacts, new FolderBlobStore(dir), signingKey, clock),
    runner: double.runner,
    validate: (request) => validateBuildRequest(RECIPES_DIRECTORY, request),
    logDirectory: join(dir, 'builds'),
    concurrency: options.concurrency ?? 1,
    clock,
    logger: pino({ level: 'silent' }),
    replicas: new ReplicaRegistry(db, clock, pino({ level: 'silent' })),
  });
  const logs: BuildLogEvent[] = [];
  queue.on('log', (event) => logs.push(event));
  await queue.start();
  opened.push({ dir, db, queue });
  return {
    dir,
    db,
    queue,
    double,
    artifacts,
    signingKey,
    logs,
    restart: async () => {
      await queue.stop();
      return openQueue({ ...options, dir, db });
    },
  };
}

afterEach(async () => {
  for (const { queue } of opened) await queue.stop();
  for (const db of new Set(opened.map((entry) => entry.db))) await db.destroy();
  for (const dir of new Set(opened.map((entry) => entry.dir))) rmSync(dir, { recursive: true, force: true });
  opened.length = 0;
});

const request = { recipe: 'pi-minimal', board: 'rpi-4b' };

async function waitForState(queue: BuildQueueService, id: string, state: BuildState): Promise<BuildJob> {
  let job: BuildJob | undefined;
  await vi.waitFor(
    async () => {
      job = await queue.getOrThrow(id);
      expect(job.state).toBe(state);
    },
    { timeout: 5_000 },
  );
  return job as BuildJob;
}

/** An output file as the builder leaves it in its cache. */
function builtFile(
  dir: string,
  role: BuiltFile['role'],
  content: string,
  overrides: Partial<BuiltFile> = {},
) {
  const path = join(dir, `${role}-${Math.random().toString(36).slice(2)}`);
  writeFileSync(path, content);
  const kinds = { 'update-payload': 'linux-image', 'disk-image': 'disk-image', sbom: 'sbom' } as const;
  return {
    role,
    path,
    name: role === 'update-payload' ? 'pi-minimal' : `pi-minimal-${role}`,
    version: '1.0.0',
    kind: kinds[role as keyof typeof kinds],
    boards: ['rpi-4b'],
    ...overrides,
  } satisfies BuiltFile;
}

describe('BuildQueueService', () => {
  it('runs jobs one at a time in submission order: the second waits queued until the first ends', async () => {
    // A clock that never moves: every job has the same created_at, so only the queue keeps the order.
    const { queue, double, dir } = await openQueue({ clock: { now: () => 1_800_000_000_000 } });
    const jobs: BuildJob[] = [];
    for (let index = 0; index < 5; index++) jobs.push(await queue.submit(request));
    expect(jobs[0]?.state).toBe('queued');

    const order: string[] = [];
    queue.on('status', (job) => {
      if (job.state === 'running' && !order.includes(job.id)) order.push(job.id);
    });
    for (let index = 0; index < jobs.length; index++) {
      const build = await double.build(index);
      // Nothing else starts while one runs.
      expect(double.started).toHaveLength(index + 1);
      const queued = await Promise.all(jobs.slice(index + 1).map((job) => queue.getOrThrow(job.id)));
      expect(queued.map((job) => job.state)).toEqual(queued.map(() => 'queued'));
      build.succeed([builtFile(dir, 'sbom', `sbom ${index}`, { version: `1.0.${index}` })]);
      await waitForState(queue, jobs[index]!.id, 'succeeded');
    }
    expect(order).toEqual(jobs.map((job) => job.id));
  });

  it('runs `concurrency` jobs at once', async () => {
    const { queue, double } = await openQueue({ concurrency: 2 });
    const jobs = [await queue.submit(request), await queue.submit(request), await queue.submit(request)];
    await double.build(1);
    await waitForState(queue, jobs[1]!.id, 'running');
    expect(double.started).toHaveLength(2);
    expect((await queue.getOrThrow(jobs[2]!.id)).state).toBe('queued');
    double.started[0]!.fail(new Error('first failed'));
    const third = await double.build(2);
    expect(third.request).toEqual(request);
    await waitForState(queue, jobs[2]!.id, 'running');
  });

  it('refuses an unknown recipe or a microcontroller board before queuing, naming what exists', async () => {
    const { queue, db } = await openQueue();
    const refusal = (body: BuildRequest) =>
      queue.submit(body).then(
        () => null,
        (error: unknown) => error as BoardfleetError,
      );
    const unknownRecipe = await refusal({ recipe: 'pi-maximal', board: 'rpi-4b' });
    expect(unknownRecipe).toBeInstanceOf(BoardfleetError);
    expect(unknownRecipe?.code).toBe('invalid-request');
    expect(unknownRecipe?.message).toMatch(/no recipe "pi-maximal".*pi-minimal, pi-with-app/);
    const mcu = await refusal({ recipe: 'pi-minimal', board: 'uno' });
    expect(mcu?.code).toBe('invalid-request');
    expect(mcu?.message).toMatch(/microcontroller board.*rpi-3b.*rpi-4b.*rpi-zero-2w/);
    const unknownBoard = await refusal({ recipe: 'pi-minimal', board: 'rpi-9' });
    expect(unknownBoard?.message).toMatch(/Unknown board "rpi-9"/);
    expect(await db.selectFrom('build_jobs').selectAll().execute()).toEqual([]);
  });

  it('cancels a queued job at once: it never runs, and its log says so', async () => {
    const { queue, double } = await openQueue();
    const first = await queue.submit(request);
    const second = await queue.submit(request);
    const third = await queue.submit(request);
    await double.build(0);
    const cancelled = await queue.cancel(second.id);
    expect(cancelled).toMatchObject({ state: 'cancelled', startedAt: null });
    expect(cancelled.finishedAt).toEqual(expect.any(Number));
    expect((await queue.readLog(second.id)).text).toMatch(/cancelled before it started\n$/);

    double.started[0]!.fail(new Error('boom'));
    await waitForState(queue, first.id, 'failed');
    const next = await double.build(1);
    await waitForState(queue, third.id, 'running');
    expect(double.started).toHaveLength(2);
    expect(next.request).toEqual(request);
    expect((await queue.getOrThrow(second.id)).state).toBe('cancelled');
  });

  it('ends a job cancelled when the cancel races its start, never leaving it running', async () => {
    let jobs: HeldBuildJobRepository | undefined;
    const { queue, double } = await openQueue({
      jobs: (db) => (jobs = new HeldBuildJobRepository(db)),
    });
    await queue.submit(request);
    const second = await queue.submit(request);
    const first = await double.build(0);
    let release = () => {};
    jobs!.hold = new Promise((resolve) => (release = resolve));
    const claimsBefore = jobs!.holding;
    first.succeed([]);
    // The queue is claiming the second job when the cancel comes.
    await vi.waitFor(() => expect(jobs!.holding).toBeGreaterThan(claimsBefore));
    const cancelling = queue.cancel(second.id);
    await new Promise((resolve) => setTimeout(resolve, 100));
    release();
    expect((await cancelling).state).toBe('cancelled');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await queue.getOrThrow(second.id)).toMatchObject({ state: 'cancelled', outputs: [] });
    for (const build of double.started.slice(1)) expect(build.reporter.signal.aborted).toBe(true);
  });

  it('cancels a running job through its AbortSignal and starts the next', async () => {
    const { queue, double } = await openQueue();
    const first = await queue.submit(request);
    const second = await queue.submit(request);
    const build = await double.build(0);
    build.reporter.log('unpacking linux-image-6.1.0-arm64');
    const cancelled = await queue.cancel(first.id);
    expect(build.reporter.signal.aborted).toBe(true);
    expect(build.reporter.signal.reason).toMatchObject({ code: 'build-cancelled' });
    expect(cancelled).toMatchObject({ state: 'cancelled', error: null });
    expect((await queue.readLog(first.id)).text).toMatch(/unpacking linux-image-6.1.0-arm64\n.*cancelled\n$/);
    await double.build(1);
    await waitForState(queue, second.id, 'running');
    await expect(queue.cancel(first.id)).rejects.toMatchObject({ code: 'conflict' });
  });

  it('cancels a running job whose runner finishes anyway without storing its outputs', async () => {
    const { queue, double, dir, artifacts } = await openQueue();
    double.ignoreAbort = true;
    const job = await queue.submit(request);
    const build = await double.build(0);
    const cancelling = queue.cancel(job.id);
    await vi.waitFor(() => expect(build.reporter.signal.aborted).toBe(true));
    build.succeed([builtFile(dir, 'update-payload', 'payload')]);
    expect((await cancelling).state).toBe('cancelled');
    expect(await queue.getOrThrow(job.id)).toMatchObject({ state: 'cancelled', outputs: [] });
    expect(await artifacts.list({ limit: 10, offset: 0 })).toEqual([]);
  });

  it('stores a failed build with its error and its log', async () => {
    const { queue, double } = await openQueue();
    const job = await queue.submit(request);
    const build = await double.build(0);
    build.reporter.progress('fetching packages', 17.4);
    build.reporter.log('busybox-static 1:1.35.0-4+b3: 1.2 MB');
    await vi.waitFor(async () =>
      expect(await queue.getOrThrow(job.id)).toMatchObject({ step: 'fetching packages', progress: 17 }),
    );
    build.fail(
      new BoardfleetError('archive-hash-mismatch', 'busybox-static does not match the Packages index'),
    );
    const failed = await waitForState(queue, job.id, 'failed');
    expect(failed).toMatchObject({
      error: 'busybox-static does not match the Packages index',
      outputs: [],
      step: 'fetching packages',
    });
    expect(failed.finishedAt).toBeGreaterThanOrEqual(failed.startedAt ?? Infinity);
    const log = (await queue.readLog(job.id)).text.split('\n');
    expect(log[0]).toMatch(/^\S+Z build bld-\w+: recipe pi-minimal, board rpi-4b$/);
    expect(log.slice(1)).toEqual([
      expect.stringMatching(/ busybox-static 1:1.35.0-4\+b3: 1.2 MB$/),
      expect.stringMatching(/ failed: busybox-static does not match the Packages index$/),
      '',
    ]);
  });

  it('queues a job that was running when the queue stopped again at the next start', async () => {
    const harness = await openQueue();
    const job = await harness.queue.submit(request);
    const waiting = await harness.queue.submit(request);
    const interrupted = await harness.double.build(0);
    interrupted.reporter.progress('assembling the root filesystem', 45);
    await vi.waitFor(async () => expect((await harness.queue.getOrThrow(job.id)).progress).toBe(45));

    const restarted = await harness.restart();
    expect(interrupted.reporter.signal.aborted).toBe(true);
    const again = await restarted.double.build(0);
    expect(again.request).toEqual(request);
    const running = await waitForState(restarted.queue, job.id, 'running');
    expect(running).toMatchObject({ error: null, finishedAt: null });
    expect((await restarted.queue.getOrThrow(waiting.id)).state).toBe('queued');
    again.succeed([]);
    await waitForState(restarted.queue, job.id, 'succeeded');
    await restarted.double.build(1);
    const log = (await restarted.queue.readLog(job.id)).text;
    expect(log.match(/build bld-\w+: recipe pi-minimal/g)).toHaveLength(2);
    expect(log).toMatch(/interrupted.*queued again/);
    expect(log).not.toMatch(/cancelled/);
  });

  it('stops while the queue looks for the next job: that job is not left running, and runs after a restart', async () => {
    let jobs: HeldBuildJobRepository | undefined;
    const harness = await openQueue({ jobs: (db) => (jobs = new HeldBuildJobRepository(db)) });
    let release = () => {};
    jobs!.hold = new Promise((resolve) => (release = resolve));
    const job = await harness.queue.submit(request);
    // The queue is claiming the next job when the stop comes.
    await vi.waitFor(() => expect(jobs!.holding).toBeGreaterThan(1));
    const stopping = harness.queue.stop();
    release();
    const outcome = await Promise.race([
      stopping.then(() => 'stopped'),
      new Promise((resolve) => setTimeout(() => resolve('still running'), 3_000)),
    ]);
    expect(outcome).toBe('stopped');
    for (const build of harness.double.started) expect(build.reporter.signal.aborted).toBe(true);
    const restarted = await harness.restart();
    await restarted.double.build(0);
    await waitForState(restarted.queue, job.id, 'running');
  });

  it('gives each log line the byte offset after it, and readLog(id, offset) returns exactly the rest', async () => {
    const { queue, double, dir, logs } = await openQueue();
    const job = await queue.submit(request);
    const build = await double.build(0);
    const lines = ['plain ascii', 'multi-byte → µs ✓', 'trailing newlines are dropped\n\n', 'last'];
    for (const line of lines) build.reporter.log(line);
    build.succeed([builtFile(dir, 'update-payload', 'payload')]);
    await waitForState(queue, job.id, 'succeeded');

    const events = logs.filter((event) => event.jobId === job.id);
    const offsets = events.map((event) => event.offset);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    expect(new Set(offsets).size).toBe(offsets.length);
    expect(events.map((event) => event.line.replace(/^\S+ /, ''))).toEqual(
      expect.arrayContaining(['plain ascii', 'multi-byte → µs ✓', 'trailing newlines are dropped', 'last']),
    );

    const whole = await queue.readLog(job.id);
    expect(whole.offset).toBe(statSync(queue.logPath(job.id)).size);
    expect(whole.offset).toBe(offsets.at(-1));
    let previous = 0;
    for (const [index, event] of events.entries()) {
      const rest = await queue.readLog(job.id, previous);
      const expected = events
        .slice(index)
        .map((later) => `${later.line}\n`)
        .join('');
      expect(rest).toEqual({ text: expected, offset: whole.offset });
      expect(Buffer.byteLength(`${event.line}\n`)).toBe(event.offset - previous);
      previous = event.offset;
    }
    expect(await queue.readLog(job.id, whole.offset)).toEqual({ text: '', offset: whole.offset });
    expect(await queue.readLog(job.id, whole.offset + 100)).toEqual({ text: '', offset: whole.offset });
    await expect(queue.readLog('bld-000000000000')).rejects.toMatchObject({ code: 'not-found' });
  });

  it('stores the outputs and the log as signed artifacts of their kinds', async () => {
    const { queue, double, dir, artifacts, signingKey } = await openQueue();
    const job = await queue.submit(request);
    const build = await double.build(0);
    build.reporter.log('made the disk');
    build.succeed([
      builtFile(dir, 'update-payload', 'root slot and boot files'),
      builtFile(dir, 'disk-image', 'compressed disk'),
      builtFile(dir, 'sbom', '{"spdxVersion":"SPDX-2.3"}'),
    ]);
    const done = await waitForState(queue, job.id, 'succeeded');
    expect(done.progress).toBe(100);
    expect(done.outputs.map((output) => output.role)).toEqual([
      'update-payload',
      'disk-image',
      'sbom',
      'build-log',
    ]);
    const kinds: Record<string, string> = {
      'update-payload': 'linux-image',
      'disk-image': 'disk-image',
      sbom: 'sbom',
      'build-log': 'build-log',
    };
    for (const output of done.outputs) {
      const artifact = await artifacts.get(output.artifactId);
      expect(artifact).toMatchObject({
        kind: kinds[output.role],
        sha256: output.sha256,
        size: output.size,
        boards: ['rpi-4b'],
        version: '1.0.0',
      });
      expect(verifyManifest(artifact!.manifest, artifact!.signature, signingKey.publicKeyPem)).toMatchObject({
        sha256: output.sha256,
      });
    }
    const log = done.outputs.find((output) => output.role === 'build-log');
    const stored = (await queue.readLog(job.id)).text;
    expect(stored).toContain('made the disk');
    expect(stored).toMatch(/storing 3 signed artifacts/);
    expect(log?.size).toBeLessThanOrEqual(Buffer.byteLength(stored));
  });

  it('builds the same recipe again: the identical outputs are reused and the new log is stored beside the old', async () => {
    const { queue, double, dir } = await openQueue();
    const outputs = [] as BuildJob['outputs'][];
    for (let index = 0; index < 2; index++) {
      const job = await queue.submit(request);
      const build = await double.build(index);
      build.reporter.log(`attempt ${index}`);
      build.succeed([builtFile(dir, 'update-payload', 'reproducible payload')]);
      outputs.push((await waitForState(queue, job.id, 'succeeded')).outputs);
    }
    const [first, second] = outputs as [BuildJob['outputs'], BuildJob['outputs']];
    expect(second[0]?.artifactId).toBe(first[0]?.artifactId);
    expect(second[1]?.role).toBe('build-log');
    expect(second[1]?.artifactId).not.toBe(first[1]?.artifactId);
  });

  it('lists jobs newest first, with paging', async () => {
    let now = 1_800_000_000_000;
    const { queue } = await openQueue({ clock: { now: () => (now += 1000) } });
    const ids: string[] = [];
    for (let index = 0; index < 3; index++) ids.push((await queue.submit(request)).id);
    expect((await queue.list(2, 0)).map((job) => job.id)).toEqual([ids[2], ids[1]]);
    expect((await queue.list(2, 2)).map((job) => job.id)).toEqual([ids[0]]);
  });
});
