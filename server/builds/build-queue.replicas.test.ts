/**
 * One build queue shared by two server replicas on one database: each queue has its own
 * connection, replica registry and runner, and they share the data folder, as replicas do.
 */
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Request, Response } from 'express';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { BuildJob, BuildState } from '../../protocol/api/builds.ts';
import { scriptedBuildRunnerDouble } from '../../test/support/build-runner-double.ts';
import { databaseBackends, sqliteBackend } from '../../test/support/databases.ts';
import { ArtifactRepository } from '../artifacts/artifact.repository.ts';
import { ArtifactService } from '../artifacts/artifact.service.ts';
import { FolderBlobStore } from '../artifacts/blob-store.repository.ts';
import { SigningKeyRepository } from '../artifacts/signing-key.repository.ts';
import { REPLICA_GONE_AFTER_MS, ReplicaRegistry } from '../cluster/replica-registry.ts';
import { systemClock } from '../common/clock.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { BuildJobRepository } from './build-job.repository.ts';
import { BUILD_POLL_MS, BuildQueueService } from './build-queue.service.ts';
import { BuildsController } from './builds.controller.ts';

const request = { recipe: 'pi-minimal', board: 'rpi-4b' };
const silent = pino({ level: 'silent' });
/** Long enough for a replica's poll round (and a heartbeat) to have come, on a busy machine. */
const ROUND_TIMEOUT_MS = 4 * BUILD_POLL_MS + 2_000;

describe.each(databaseBackends)('the build queue on two replicas ($name)', (backend) => {
  let url: string;
  let drop: () => Promise<void>;
  let dir: string;
  let setup: Database;
  const cleanups: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    ({ url, drop } = await backend.create());
    dir = mkdtempSync(join(tmpdir(), 'boardfleet-build-replicas-'));
    setup = openDatabase(url);
    await migrateToLatest(setup);
  });
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups.length = 0;
    await setup.destroy();
    await drop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A replica: its own connection, a registry that beats (on a clock the test may set back), a queue. */
  async function startReplica(options: { concurrency?: number } = {}) {
    const db = openDatabase(url);
    const lag = { ms: 0 };
    const registry = new ReplicaRegistry(db, { now: () => Date.now() - lag.ms }, silent);
    await registry.start({ httpUrl: 'http://127.0.0.1:0', broker: 'mqtt://127.0.0.1:1883' });
    const double = scriptedBuildRunnerDouble();
    const queue = new BuildQueueService({
      jobs: new BuildJobRepository(db),
      artifacts: new ArtifactService(
        new ArtifactRepository(db),
        new FolderBlobStore(dir),
        SigningKeyRepository.load(dir, null),
        systemClock,
      ),
      runner: double.runner,
      validate: () => undefined,
      logDirectory: join(dir, 'builds'),
      concurrency: options.concurrency ?? 1,
      clock: systemClock,
      logger: silent,
      replicas: registry,
    });
    await queue.start();
    cleanups.push(async () => {
      await queue.stop();
      await registry.stop();
      await db.destroy();
    });
    return {
      queue,
      double,
      registry,
      /** Makes this replica's heartbeat stale, as if it had stopped answering. */
      async goSilent() {
        lag.ms = REPLICA_GONE_AFTER_MS * 2;
        await setup
          .updateTable('server_replicas')
          .set({ seen_at: Date.now() - lag.ms })
          .where('id', '=', registry.id)
          .execute();
      },
    };
  }

  async function waitForState(queue: BuildQueueService, id: string, state: BuildState): Promise<BuildJob> {
    let job: BuildJob | undefined;
    await vi.waitFor(
      async () => {
        job = await queue.getOrThrow(id);
        expect(job.state).toBe(state);
      },
      { timeout: ROUND_TIMEOUT_MS },
    );
    return job as BuildJob;
  }

  const headers = (log: string) => log.match(/build bld-\w+: recipe pi-minimal/g) ?? [];

  it('claims each queued job for one replica when both claim at the same moment', async () => {
    const connections = [openDatabase(url), openDatabase(url)];
    cleanups.push(async () => {
      for (const db of connections) await db.destroy();
    });
    const repositories = connections.map((db) => new BuildJobRepository(db));
    const ids = Array.from({ length: 20 }, (_, index) => `bld-${String(index).padStart(12, '0')}`);
    for (const [index, id] of ids.entries())
      await repositories[0]!.insert({ id, ...request, createdAt: 1_800_000_000_000 + index });

    const claims = await Promise.all(
      Array.from({ length: 40 }, (_, index) => repositories[index % 2]!.claimNext(`replica-${index % 2}`, 1)),
    );
    const claimed = claims.filter((job) => job !== null).map((job) => job.id);
    expect(claimed.sort()).toEqual(ids);
    const rows = await setup.selectFrom('build_jobs').select(['state', 'claimed_by']).execute();
    expect(rows.every((row) => row.state === 'running' && /^replica-[01]$/.test(row.claimed_by ?? ''))).toBe(
      true,
    );
  });

  it('runs every job exactly once across both replicas, each at most its concurrency at a time', async () => {
    const first = await startReplica({ concurrency: 2 });
    const second = await startReplica({ concurrency: 2 });
    const jobs: BuildJob[] = [];
    for (let index = 0; index < 10; index++)
      jobs.push(await (index % 2 ? second : first).queue.submit(request));
    const replicas = [first, second];
    const ended = new Set<object>();
    const running = () => replicas.map(({ double }) => double.started.filter((build) => !ended.has(build)));
    // Both replicas build at once; each new build is ended once it has started, until all ran.
    await vi.waitFor(() => expect(running().map((builds) => builds.length)).toEqual([2, 2]), {
      timeout: ROUND_TIMEOUT_MS,
    });
    while (ended.size < jobs.length) {
      await vi.waitFor(() => expect(running().flat().length).toBeGreaterThan(0), {
        timeout: ROUND_TIMEOUT_MS,
      });
      for (const builds of running()) expect(builds.length).toBeLessThanOrEqual(2);
      for (const build of running().flat()) {
        ended.add(build);
        build.succeed([]);
      }
    }
    const done = await Promise.all(jobs.map((job) => waitForState(first.queue, job.id, 'succeeded')));
    expect(done.every((job) => job.progress === 100)).toBe(true);
    expect(first.double.started.length + second.double.started.length).toBe(jobs.length);
    const claimedBy = await setup.selectFrom('build_jobs').select(['id', 'claimed_by']).execute();
    expect(new Set(claimedBy.map((row) => row.claimed_by))).toEqual(
      new Set([first.registry.id, second.registry.id]),
    );
    for (const job of jobs) expect(headers((await second.queue.readLog(job.id)).text)).toHaveLength(1);
  });

  it('starts a job queued on the other replica within a poll round', async () => {
    // Replicas that run take any queued job: each test starts the second once the first holds its own.
    const busy = await startReplica();
    const blocking = await busy.queue.submit(request);
    await busy.double.build(0);
    const idle = await startReplica();
    const waiting = await busy.queue.submit(request);
    const taken = await idle.double.build(0);
    expect((await idle.queue.getOrThrow(waiting.id)).state).toBe('running');
    expect((await idle.queue.getOrThrow(blocking.id)).state).toBe('running');
    taken.succeed([]);
    await waitForState(busy.queue, waiting.id, 'succeeded');
    expect(busy.double.started).toHaveLength(1);
  });

  it('queues a build of a replica whose heartbeat went stale again; the other finishes it', async () => {
    const doomed = await startReplica();
    // Its build never ends by itself: the replica taken for dead never has a free slot again.
    doomed.double.ignoreAbort = true;
    const job = await doomed.queue.submit(request);
    const orphaned = await doomed.double.build(0);
    cleanups.push(async () => orphaned.succeed([]));
    const survivor = await startReplica();
    orphaned.reporter.log('unpacking the root filesystem');
    orphaned.reporter.progress('assembling the root filesystem', 40);
    await vi.waitFor(async () => expect((await survivor.queue.getOrThrow(job.id)).progress).toBe(40));

    await doomed.goSilent();
    const again = await survivor.double.build(0);
    expect(again.request).toEqual(request);
    const running = await waitForState(survivor.queue, job.id, 'running');
    expect(running).toMatchObject({ progress: 0, finishedAt: null });
    // The replica taken for dead stops its build when it sees the claim gone, and writes nothing more.
    await vi.waitFor(() => expect(orphaned.reporter.signal.aborted).toBe(true), {
      timeout: ROUND_TIMEOUT_MS,
    });
    expect((orphaned.reporter.signal.reason as Error).message).toMatch(
      new RegExp(`taken over by replica ${survivor.registry.id}|queued again on another replica`),
    );
    orphaned.reporter.progress('late', 90);
    orphaned.reporter.log('a late line from the replica taken for dead');
    again.reporter.progress('fetching packages', 10);
    await vi.waitFor(async () =>
      expect(await survivor.queue.getOrThrow(job.id)).toMatchObject({
        step: 'fetching packages',
        progress: 10,
      }),
    );
    again.succeed([]);
    const done = await waitForState(survivor.queue, job.id, 'succeeded');
    expect(done.progress).toBe(100);
    const claim = await setup
      .selectFrom('build_jobs')
      .select('claimed_by')
      .where('id', '=', job.id)
      .executeTakeFirst();
    expect(claim?.claimed_by).toBe(survivor.registry.id);

    const log = (await survivor.queue.readLog(job.id)).text;
    expect(headers(log)).toHaveLength(2);
    expect(log).toContain(
      `replica ${doomed.registry.id} running this build has gone; the build is queued again`,
    );
    expect(log).toContain('unpacking the root filesystem');
    expect(log).not.toContain('a late line');
    expect(doomed.double.started).toHaveLength(1);
  });

  it('stops a build on the replica running it when another replica cancels it', async () => {
    const builder = await startReplica();
    const job = await builder.queue.submit(request);
    const build = await builder.double.build(0);
    const other = await startReplica();

    const cancelled = await other.queue.cancel(job.id);
    expect(cancelled.state).toBe('cancelled');
    await vi.waitFor(() => expect(build.reporter.signal.aborted).toBe(true), { timeout: ROUND_TIMEOUT_MS });
    // The builder leaves the ending to the replica that cancelled: one line, the state it wrote.
    build.reporter.log('a line after the cancel');
    const next = await other.queue.submit(request);
    // Either replica may take it, the builder too: its slot is free again.
    await vi.waitFor(() => expect(other.double.started.length + builder.double.started.length).toBe(2), {
      timeout: ROUND_TIMEOUT_MS,
    });
    (other.double.started[0] ?? builder.double.started[1])!.succeed([]);
    await waitForState(other.queue, next.id, 'succeeded');
    expect((await builder.queue.getOrThrow(job.id)).state).toBe('cancelled');
    const log = (await builder.queue.readLog(job.id)).text;
    expect(log.match(/cancelled/g)).toHaveLength(1);
    expect(log).not.toContain('a line after the cancel');
  });

  it('hands a running build to another replica at once when its replica stops', async () => {
    const stopping = await startReplica();
    const job = await stopping.queue.submit(request);
    const interrupted = await stopping.double.build(0);
    const other = await startReplica();
    await stopping.queue.stop();
    expect(interrupted.reporter.signal.aborted).toBe(true);
    (await other.double.build(0)).succeed([]);
    await waitForState(other.queue, job.id, 'succeeded');
    const log = (await other.queue.readLog(job.id)).text;
    expect(log).toMatch(
      /interrupted: the server is stopping; the build is queued again for another server or its next start\n/,
    );
    expect(headers(log)).toHaveLength(2);
  });

  it('streams the log and end of a build running on another replica to a watcher', async () => {
    const builder = await startReplica();
    const job = await builder.queue.submit(request);
    const build = await builder.double.build(0);
    const watched = await startReplica();
    const controller = new BuildsController(watched.queue);
    const http: Server = createServer((incoming, response) => {
      const id = decodeURIComponent(incoming.url!.slice(1));
      controller.events(id, incoming as Request, response as unknown as Response).catch(() => {
        response.writeHead(404).end();
      });
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    });

    const response = await fetch(`http://127.0.0.1:${(http.address() as AddressInfo).port}/${job.id}`);
    let received = '';
    // The stream ends with the build: all it sent is what the watcher saw.
    const ended = (async () => {
      for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) received += chunk;
    })();
    build.reporter.log('busybox-static 1:1.35.0-4+b3: 1.2 MB');
    build.reporter.progress('fetching packages', 25);
    await vi.waitFor(() => expect(received).toContain('"step":"fetching packages"'), { timeout: 5_000 });
    build.succeed([]);
    await ended;
    const events = received
      .split('\n\n')
      .filter(Boolean)
      .map((block) => Object.fromEntries(block.split('\n').map((line) => line.split(/: (.*)/s, 2))));
    const lines = events
      .filter((event) => event.event === 'log')
      .map((event) => (JSON.parse(event.data as string) as string).replace(/^\S+ /, ''));
    expect(lines).toEqual([
      `build ${job.id}: recipe pi-minimal, board rpi-4b`,
      'busybox-static 1:1.35.0-4+b3: 1.2 MB',
      expect.stringMatching(/^built in [\d.]+ s; storing 0 signed artifacts$/),
    ]);
    expect(events.at(-1)).toMatchObject({ event: 'end', data: '{"state":"succeeded"}' });
  });
});

describe('a build left running by a server that was killed', () => {
  let url: string;
  let drop: () => Promise<void>;
  let db: Database;
  let dir: string;
  let queue: BuildQueueService | null = null;

  beforeEach(async () => {
    ({ url, drop } = await sqliteBackend.create());
    dir = mkdtempSync(join(tmpdir(), 'boardfleet-build-restart-'));
    db = openDatabase(url);
    await migrateToLatest(db);
  });
  afterEach(async () => {
    await queue?.stop();
    queue = null;
    await db.destroy();
    await drop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The killed server's state: its build `running`, its replica row as fresh as a second ago. */
  async function leftByKilledServer(): Promise<string[]> {
    const now = Date.now();
    await db
      .insertInto('server_replicas')
      .values({
        id: 'killed',
        http_url: 'http://127.0.0.1:8080',
        broker: 'embedded',
        // Another host: its process cannot be checked from here, so only its heartbeat tells.
        host: 'another-host',
        pid: 1,
        started_at: now,
        seen_at: now,
      })
      .execute();
    const jobs = new BuildJobRepository(db);
    await jobs.insert({ id: 'bld-000000000001', ...request, createdAt: now - 2 });
    await jobs.insert({ id: 'bld-000000000002', ...request, createdAt: now - 1 });
    await jobs.claimNext('killed', now);
    // A build from a server older than replicas names nobody.
    await db
      .updateTable('build_jobs')
      .set({ state: 'running' })
      .where('id', '=', 'bld-000000000002')
      .execute();
    return ['bld-000000000001', 'bld-000000000002'];
  }

  async function startQueue(soleServer: boolean) {
    const double = scriptedBuildRunnerDouble();
    queue = new BuildQueueService({
      jobs: new BuildJobRepository(db),
      artifacts: new ArtifactService(
        new ArtifactRepository(db),
        new FolderBlobStore(dir),
        SigningKeyRepository.load(dir, null),
        systemClock,
      ),
      runner: double.runner,
      validate: () => undefined,
      logDirectory: join(dir, 'builds'),
      concurrency: 1,
      clock: systemClock,
      logger: silent,
      replicas: new ReplicaRegistry(db, systemClock, silent),
      soleServer,
    });
    await queue.start();
    return { queue, double };
  }

  it('runs again at start on SQLite, which one server owns, without waiting for a stale heartbeat', async () => {
    const [killed, legacy] = await leftByKilledServer();
    const { queue, double } = await startQueue(true);
    await double.build(0);
    expect((await queue.getOrThrow(killed!)).state).toBe('running');
    expect((await queue.getOrThrow(legacy!)).state).toBe('queued');
    expect((await queue.readLog(killed!)).text).toContain('replica killed running this build has gone');
    expect((await queue.readLog(legacy!)).text).toContain('the server running this build has gone');
  });

  it('waits for the heartbeat to go stale where other replicas may run (PostgreSQL)', async () => {
    const [killed, legacy] = await leftByKilledServer();
    const { queue, double } = await startQueue(false);
    // The row of a server from before replicas is queued again at once; the fresh claim is kept.
    const first = await double.build(0);
    expect(await queue.getOrThrow(legacy!)).toMatchObject({ state: 'running' });
    expect(await queue.getOrThrow(killed!)).toMatchObject({ state: 'running', progress: 0 });
    expect((await queue.readLog(killed!)).text).toBe('');
    // Once the killed server's heartbeat is stale, its build is queued again and runs here.
    await db
      .updateTable('server_replicas')
      .set({ seen_at: Date.now() - 2 * REPLICA_GONE_AFTER_MS })
      .execute();
    first.succeed([]);
    await double.build(1);
    expect((await queue.readLog(killed!)).text).toContain('replica killed running this build has gone');
  });
});
