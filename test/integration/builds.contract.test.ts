import 'reflect-metadata';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Request, Response } from 'express';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildJob } from '../../protocol/api/builds.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ArtifactRepository } from '../../server/artifacts/artifact.repository.ts';
import { ArtifactService } from '../../server/artifacts/artifact.service.ts';
import { FolderBlobStore } from '../../server/artifacts/blob-store.repository.ts';
import { SigningKeyRepository } from '../../server/artifacts/signing-key.repository.ts';
import { BuildJobRepository } from '../../server/builds/build-job.repository.ts';
import type { BuildRunner } from '../../builder/build-runner.ts';
import { BuildQueueService } from '../../server/builds/build-queue.service.ts';
import { BuildsController } from '../../server/builds/builds.controller.ts';
import { ReplicaRegistry } from '../../server/cluster/replica-registry.ts';
import { systemClock } from '../../server/common/clock.ts';
import { type Database, migrateToLatest, openDatabase } from '../../server/db/database.ts';
import { databaseBackends } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

interface SseEvent {
  id?: number;
  event: string;
  data: unknown;
}

/** A server-sent event stream read one event at a time. */
async function openEventStream(url: string, token: string, lastEventId?: number) {
  const aborter = new AbortController();
  const response = await fetch(url, {
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'text/event-stream',
      ...(lastEventId === undefined ? {} : { 'last-event-id': String(lastEventId) }),
    },
    signal: aborter.signal,
  });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  const next = async (): Promise<SseEvent | null> => {
    for (;;) {
      const boundary = buffer.indexOf('\n\n');
      if (boundary >= 0) {
        const fields = new Map<string, string>();
        for (const line of buffer.slice(0, boundary).split('\n')) {
          const colon = line.indexOf(': ');
          if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 2));
        }
        buffer = buffer.slice(boundary + 2);
        return {
          ...(fields.has('id') ? { id: Number(fields.get('id')) } : {}),
          event: fields.get('event') ?? 'message',
          data: JSON.parse(fields.get('data') ?? 'null') as unknown,
        };
      }
      const chunk = await reader.read().catch(() => ({ done: true as const, value: undefined }));
      if (chunk.done) return null;
      buffer += chunk.value;
    }
  };
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    next,
    /** Events up to and including the first that matches, or up to the end of the stream. */
    async until(predicate: (event: SseEvent) => boolean): Promise<SseEvent[]> {
      const events: SseEvent[] = [];
      for (let event = await next(); event; event = await next()) {
        events.push(event);
        if (predicate(event)) break;
      }
      return events;
    },
    close: () => aborter.abort(),
  };
}

const isEnd = (event: SseEvent) => event.event === 'end';
const logLines = (events: SseEvent[]) =>
  events.filter((event) => event.event === 'log').map((event) => event.data as string);

/** Every line of a log with the byte offset just after it: what the stream's event ids must be. */
function linesWithOffsets(log: string): Array<{ line: string; offset: number }> {
  let offset = 0;
  return log
    .split('\n')
    .slice(0, -1)
    .map((line) => ({ line, offset: (offset += Buffer.byteLength(line) + 1) }));
}

/**
 * Stands in for the Debian mirror, so that the real image builder's first request can be held
 * open (a running build that only a cancel ends) or answered 404 (a build that fails at once).
 */
async function startMirrorDouble() {
  const held: IncomingMessage[] = [];
  let aborted = 0;
  const server: Server = createServer((request, response) => {
    if (request.url?.startsWith('/held/')) {
      held.push(request);
      response.on('close', () => aborted++);
      return;
    }
    response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held,
    get aborted() {
      return aborted;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

const recipe = (name: string, mirror: string) => `kind: linux-image
name: ${name}
version: 1.0.0
base: { mirror: '${mirror}', suite: bookworm, components: [main] }
agent: { include: false }
partitions: { boot: 64, root: 32, data: 16 }
`;

describe.each(databaseBackends)('image builds API on $name', (backend) => {
  let server: TestServer;
  let mirror: Awaited<ReturnType<typeof startMirrorDouble>>;
  let recipesDir: string;
  let cacheDir: string;

  const post = (body: unknown, token?: string) =>
    server.api<BuildJob & { message: string }>('POST', '/api/v1/builds', body, token);
  const job = async (id: string) => (await server.api<BuildJob>('GET', `/api/v1/builds/${id}`)).body;
  const events = (id: string, lastEventId?: number) =>
    openEventStream(`${server.httpUrl}/api/v1/builds/${id}/events`, server.adminToken, lastEventId);
  const runningBuild = async () => {
    const before = mirror.held.length;
    const { status, body } = await post({ recipe: 'held-mirror', board: 'rpi-4b' });
    expect(status).toBe(202);
    await eventually('the build to ask the mirror double', () => mirror.held.length > before);
    return body;
  };

  beforeAll(async () => {
    mirror = await startMirrorDouble();
    recipesDir = mkdtempSync(join(tmpdir(), 'boardfleet-recipes-'));
    cacheDir = mkdtempSync(join(tmpdir(), 'boardfleet-build-cache-'));
    writeFileSync(join(recipesDir, 'held-mirror.yaml'), recipe('held-mirror', `${mirror.url}/held`));
    writeFileSync(join(recipesDir, 'missing-mirror.yaml'), recipe('missing-mirror', `${mirror.url}/missing`));
    writeFileSync(join(recipesDir, 'broken.yaml'), 'kind: linux-image\nname: broken\n');
    server = await startTestServer(backend, {
      BOARDFLEET_RECIPES_DIR: recipesDir,
      BOARDFLEET_BUILD_CACHE: cacheDir,
    });
  });
  afterAll(async () => {
    await server?.dispose();
    await mirror?.close();
    rmSync(recipesDir, { recursive: true, force: true });
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it('refuses an unknown recipe, a broken one and a microcontroller board with a 400 that says what exists', async () => {
    const unknown = await post({ recipe: 'pi-maximal', board: 'rpi-4b' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.message).toMatch(
      /no recipe "pi-maximal" in .*; recipes: broken, held-mirror, missing-mirror$/,
    );
    const mcu = await post({ recipe: 'held-mirror', board: 'uno' });
    expect(mcu.status).toBe(400);
    expect(mcu.body.message).toMatch(
      /"uno" .* is a microcontroller board: Linux images are built for .*rpi-3b, rpi-4b, rpi-zero-2w/,
    );
    const broken = await post({ recipe: 'broken', board: 'rpi-4b' });
    expect(broken.status).toBe(400);
    expect(broken.body.message).toMatch(/broken\.yaml is not a valid image recipe:[\s\S]*version/);
    expect((await post({ recipe: 'Held Mirror', board: 'rpi-4b' })).status).toBe(400);
    expect((await post({ recipe: 'held-mirror', board: 'rpi-4b', extra: 1 })).status).toBe(400);
    const { body } = await server.api<{ builds: BuildJob[] }>('GET', '/api/v1/builds');
    expect(body.builds).toEqual([]);
    expect(mirror.held).toHaveLength(0);
  });

  it('lets a viewer read builds but not start or cancel one', async () => {
    const viewer = await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', {
      name: 'build-watcher',
      role: 'viewer',
    });
    const refused = await post({ recipe: 'missing-mirror', board: 'rpi-4b' }, viewer.body.token);
    expect(refused.status).toBe(403);
    expect((await server.api('GET', '/api/v1/builds', undefined, viewer.body.token)).status).toBe(200);
    expect((await server.api<{ builds: BuildJob[] }>('GET', '/api/v1/builds')).body.builds).toEqual([]);
    const queued = await post({ recipe: 'missing-mirror', board: 'rpi-4b' });
    const cancel = await server.api(
      'POST',
      `/api/v1/builds/${queued.body.id}/cancel`,
      undefined,
      viewer.body.token,
    );
    expect(cancel.status).toBe(403);
    await eventually('the build to fail', async () => (await job(queued.body.id)).state === 'failed', 45_000);
  });

  it('stores a failed build with its error; the log reads from any byte offset', async () => {
    const created = await post({ recipe: 'missing-mirror', board: 'rpi-4b' });
    expect(created).toMatchObject({
      status: 202,
      body: { recipe: 'missing-mirror', board: 'rpi-4b', state: 'queued', outputs: [] },
    });
    const failed = await eventually(
      'the build to fail',
      async () => {
        const current = await job(created.body.id);
        return current.state === 'failed' ? current : undefined;
      },
      45_000,
    );
    expect(failed.error).toContain(`${mirror.url}/missing/dists/bookworm/InRelease answered HTTP 404`);
    expect(failed.finishedAt).toBeGreaterThanOrEqual(failed.startedAt!);

    const whole = await fetch(`${server.httpUrl}/api/v1/builds/${created.body.id}/log`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect(whole.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await whole.text();
    expect(text).toMatch(new RegExp(`build ${created.body.id}: recipe missing-mirror, board rpi-4b\n`));
    expect(text).toMatch(/ failed: .*answered HTTP 404.*\n$/);
    expect(Number(whole.headers.get('x-log-offset'))).toBe(Buffer.byteLength(text));
    expect(text).toBe(readFileSync(join(server.dataDir, 'builds', `${created.body.id}.log`), 'utf8'));

    for (const { offset } of linesWithOffsets(text)) {
      const rest = await fetch(`${server.httpUrl}/api/v1/builds/${created.body.id}/log?offset=${offset}`, {
        headers: { authorization: `Bearer ${server.adminToken}` },
      });
      expect(await rest.text()).toBe(Buffer.from(text).subarray(offset).toString());
      expect(rest.headers.get('x-log-offset')).toBe(String(Buffer.byteLength(text)));
    }
    expect((await server.api('GET', `/api/v1/builds/${created.body.id}/log?offset=-1`)).status).toBe(400);

    const listed = await server.api<{ builds: BuildJob[] }>('GET', '/api/v1/builds?limit=1');
    expect(listed.body.builds.map((build) => build.id)).toEqual([created.body.id]);
  });

  it('streams an ended build as server-sent events and resumes from every Last-Event-ID exactly', async () => {
    const created = await post({ recipe: 'missing-mirror', board: 'rpi-4b' });
    await eventually(
      'the build to fail',
      async () => (await job(created.body.id)).state === 'failed',
      45_000,
    );
    const log = readFileSync(join(server.dataDir, 'builds', `${created.body.id}.log`), 'utf8');
    const expected = linesWithOffsets(log);

    const stream = await events(created.body.id);
    expect(stream.status).toBe(200);
    expect(stream.contentType).toBe('text/event-stream');
    const all = await stream.until(isEnd);
    const lines = all.filter((event) => event.event === 'log');
    expect(lines.map((event) => ({ line: event.data, offset: event.id }))).toEqual(expected);
    expect(all.slice(lines.length).map((event) => event.event)).toEqual(['status', 'end']);
    expect(all.at(-2)?.data).toMatchObject({ id: created.body.id, state: 'failed' });
    expect(all.at(-1)).toEqual({ id: Buffer.byteLength(log), event: 'end', data: { state: 'failed' } });
    expect(await stream.next()).toBeNull();

    for (const [index, { offset }] of expected.entries()) {
      const resumed = await (await events(created.body.id, offset)).until(isEnd);
      expect(resumed.filter((event) => event.event === 'log').map((event) => event.id)).toEqual(
        expected.slice(index + 1).map((line) => line.offset),
      );
      expect(logLines(resumed)).toEqual(expected.slice(index + 1).map((line) => line.line));
    }
  });

  it('queues a second build behind a running one; cancels the queued one, then the running one through its signal', async () => {
    const first = await runningBuild();
    expect((await job(first.id)).state).toBe('running');
    const second = await post({ recipe: 'held-mirror', board: 'rpi-4b' });
    expect(second.status).toBe(202);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await job(second.body.id)).state).toBe('queued');
    expect(mirror.held).toHaveLength(1);
    const cancelledQueued = await server.api<BuildJob>('POST', `/api/v1/builds/${second.body.id}/cancel`);
    expect(cancelledQueued).toMatchObject({ status: 200, body: { state: 'cancelled', startedAt: null } });

    // One watcher stays connected; another leaves after the first line and comes back after the cancel.
    const staying = await events(first.id);
    const leaving = await events(first.id);
    const beforeLeaving = await leaving.until((event) => event.event === 'status');
    leaving.close();
    const lastSeen = beforeLeaving.filter((event) => event.event === 'log').at(-1)!;
    expect(lastSeen.data).toMatch(new RegExp(`build ${first.id}: recipe held-mirror`));
    expect(beforeLeaving.at(-1)?.data).toMatchObject({ state: 'running' });

    const abortedBefore = mirror.aborted;
    const cancelled = await server.api<BuildJob>('POST', `/api/v1/builds/${first.id}/cancel`);
    expect(cancelled).toMatchObject({ status: 200, body: { state: 'cancelled', error: null } });
    // The builder's request to the mirror was aborted: the runner saw its AbortSignal.
    await eventually('the mirror request to be aborted', () => mirror.aborted > abortedBefore);

    const live = await staying.until(isEnd);
    expect(logLines(live)).toEqual([
      expect.stringMatching(/build .*: recipe held-mirror/),
      expect.stringMatching(/ cancelled$/),
    ]);
    expect(live.at(-1)?.data).toEqual({ state: 'cancelled' });

    const resumed = await (await events(first.id, lastSeen.id)).until(isEnd);
    expect(logLines(resumed)).toEqual([expect.stringMatching(/ cancelled$/)]);
    const log = readFileSync(join(server.dataDir, 'builds', `${first.id}.log`), 'utf8');
    expect(resumed.find((event) => event.event === 'log')?.id).toBe(Buffer.byteLength(log));
    expect(resumed.at(-2)?.data).toMatchObject({ state: 'cancelled' });

    const again = await server.api<{ message: string }>('POST', `/api/v1/builds/${first.id}/cancel`);
    expect(again).toMatchObject({
      status: 409,
      body: { message: `build ${first.id} has already ended (cancelled)` },
    });
    expect(mirror.held).toHaveLength(1);
  });

  it('answers 404 for a build that does not exist', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/builds/bld-000000000000'],
      ['GET', '/api/v1/builds/bld-000000000000/log'],
      ['GET', '/api/v1/builds/bld-000000000000/events'],
      ['POST', '/api/v1/builds/bld-000000000000/cancel'],
    ] as const) {
      const response = await server.api<{ message: string }>(method, path);
      expect(response).toMatchObject({ status: 404, body: { message: 'build bld-000000000000 not found' } });
    }
  });

  it('queues a build that was running when the server stopped again at the next start', async () => {
    const interrupted = await runningBuild();
    const watcher = await events(interrupted.id);
    await watcher.until((event) => event.event === 'status');
    const heldBefore = mirror.held.length;
    const stoppedAt = Date.now();
    server = await server.restart();
    // A connected watcher does not hold up the shutdown.
    expect(Date.now() - stoppedAt).toBeLessThan(10_000);
    expect(await watcher.until(isEnd)).not.toContainEqual(expect.objectContaining({ event: 'end' }));

    await eventually('the build to ask the mirror double again', () => mirror.held.length > heldBefore);
    const resumed = await job(interrupted.id);
    expect(resumed).toMatchObject({ state: 'running', error: null, finishedAt: null });
    const log = readFileSync(join(server.dataDir, 'builds', `${interrupted.id}.log`), 'utf8');
    expect(log.match(/: recipe held-mirror, board rpi-4b/g)).toHaveLength(2);
    expect(log).toMatch(
      / interrupted: the server is stopping; the build is queued again for another server or its next start\n/,
    );
    const cancelled = await server.api<BuildJob>('POST', `/api/v1/builds/${interrupted.id}/cancel`);
    expect(cancelled.body.state).toBe('cancelled');
  });
});

/**
 * Stands in for the image builder: writes many lines quickly (some multi-byte) in small bursts,
 * then fails, so watchers connect while lines are still being written.
 */
const chattyBuildRunnerDouble =
  (lines: number): BuildRunner =>
  async (_request, reporter) => {
    for (let index = 0; index < lines; index++) {
      reporter.log(`line ${index} ${'✓'.repeat(index % 4)}`);
      if (index % 25 === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new BoardfleetError('build-failed', `scripted failure after ${lines} lines`);
  };

describe('build events while the log is being written (the controller on a plain HTTP server)', () => {
  let dir: string;
  let db: Database;
  let queue: BuildQueueService;
  let http: Server;
  let url: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'boardfleet-build-events-'));
    db = openDatabase(`sqlite:${join(dir, 'test.sqlite')}`);
    await migrateToLatest(db);
    queue = new BuildQueueService({
      jobs: new BuildJobRepository(db),
      artifacts: new ArtifactService(
        new ArtifactRepository(db),
        new FolderBlobStore(dir),
        SigningKeyRepository.load(dir, null),
        systemClock,
      ),
      runner: chattyBuildRunnerDouble(400),
      validate: () => undefined,
      logDirectory: join(dir, 'builds'),
      concurrency: 1,
      clock: systemClock,
      logger: pino({ level: 'silent' }),
      replicas: new ReplicaRegistry(db, systemClock, pino({ level: 'silent' })),
    });
    await queue.start();
    const controller = new BuildsController(queue);
    http = createServer((request, response) => {
      const id = decodeURIComponent(request.url!.slice(1));
      controller.events(id, request as Request, response as unknown as Response).catch(() => {
        response.writeHead(404).end();
      });
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    http?.closeAllConnections();
    await new Promise((resolve) => http?.close(resolve));
    await queue?.stop();
    await db?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends every line once, in order, with its byte offset, to watchers that join, leave and come back', async () => {
    const job = await queue.submit({ recipe: 'pi-minimal', board: 'rpi-4b' });
    const stream = (lastEventId?: number) => openEventStream(`${url}/${job.id}`, '', lastEventId);
    const early = await stream();
    const received: SseEvent[][] = [];
    const watchers = [0, 5, 15, 40].map(async (delay, index) => {
      await new Promise((resolve) => setTimeout(resolve, delay));
      const events: SseEvent[] = [];
      let lastId: number | undefined;
      // Each watcher drops its connection after a few lines and resumes from the last id it saw.
      for (let connection = 0; ; connection++) {
        const current = await stream(lastId);
        let lines = 0;
        const batch = await current.until(
          (event) =>
            isEnd(event) || (connection < 3 && event.event === 'log' && ++lines === 20 * (index + 1)),
        );
        current.close();
        events.push(...batch);
        lastId = batch.filter((event) => event.id !== undefined).at(-1)?.id ?? lastId;
        if (batch.at(-1)?.event === 'end') break;
      }
      received.push(events);
    });
    const fromStart = await early.until(isEnd);
    await Promise.all(watchers);

    const log = readFileSync(queue.logPath(job.id), 'utf8');
    const expected = linesWithOffsets(log);
    expect(expected).toHaveLength(402);
    for (const events of [fromStart, ...received]) {
      const lines = events.filter((event) => event.event === 'log');
      expect(lines.map((event) => ({ line: event.data, offset: event.id }))).toEqual(expected);
      expect(events.at(-1)).toEqual({ id: Buffer.byteLength(log), event: 'end', data: { state: 'failed' } });
    }
  });

  it('sends each line once to watchers that connect just as the build ends', async () => {
    const job = await queue.submit({ recipe: 'pi-minimal', board: 'rpi-4b' });
    const watchers: Array<Promise<SseEvent[]>> = [];
    const watch = () =>
      watchers.push(openEventStream(`${url}/${job.id}`, '').then((stream) => stream.until(isEnd)));
    let lines = 0;
    const ended = new Promise<void>((resolve) => {
      queue.on('log', (event) => {
        if (event.jobId === job.id && ++lines > 390) watch();
      });
      queue.on('status', (status) => {
        if (status.id !== job.id || status.state !== 'failed') return;
        for (let index = 0; index < 5; index++) watch();
        resolve();
      });
    });
    await ended;
    const expected = linesWithOffsets(readFileSync(queue.logPath(job.id), 'utf8'));
    expect(watchers).toHaveLength(expected.length - 390 + 5);
    for (const events of await Promise.all(watchers)) {
      const received = events.filter((event) => event.event === 'log');
      expect(received.map((event) => ({ line: event.data, offset: event.id }))).toEqual(expected);
    }
  });

  it('answers a resume past the end of the log with no lines and the end', async () => {
    const job = await queue.submit({ recipe: 'pi-minimal', board: 'rpi-4b' });
    const done = await new Promise<BuildJob>((resolve) =>
      queue.on('status', (status) => status.id === job.id && status.state === 'failed' && resolve(status)),
    );
    expect(done.error).toBe('scripted failure after 400 lines');
    const events = await (await openEventStream(`${url}/${job.id}`, '', 10_000_000)).until(isEnd);
    expect(events.map((event) => event.event)).toEqual(['status', 'end']);
    const fromJunk = await (await openEventStream(`${url}/${job.id}`, '', -5)).until(isEnd);
    expect(logLines(fromJunk)).toHaveLength(402);
  });
});
