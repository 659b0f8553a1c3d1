import { createReadStream, mkdirSync } from 'node:fs';
import { appendFile, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { BuildJob, BuildOutput } from '../../protocol/api/builds.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ArtifactService } from '../artifacts/artifact.service.ts';
import type { ReplicaRegistry } from '../cluster/replica-registry.ts';
import type { Clock } from '../common/clock.ts';
import { notFound } from '../common/errors.ts';
import { generateId } from '../common/secrets.ts';
import type { BuildJobRepository } from './build-job.repository.ts';
import { sha256File } from '../../lib/hash.ts';
import type { BuildReporter, BuildRequest, BuildRunner, BuiltFile } from '../../builder/build-runner.ts';

export interface BuildQueueOptions {
  jobs: BuildJobRepository;
  artifacts: ArtifactService;
  runner: BuildRunner;
  /** Checks a request before it is queued (known recipe, Linux board), throwing what is wrong. */
  validate: (request: BuildRequest) => void;
  logDirectory: string;
  concurrency: number;
  clock: Clock;
  logger: Logger;
  /** This server among the replicas sharing the database: whose builds are whose, who has gone. */
  replicas: Pick<ReplicaRegistry, 'id' | 'isAlive'>;
  /**
   * No other server can use this database (SQLite, which one process claims): a build left
   * running under another replica id is this server's own from before it was killed, and is
   * queued again at start instead of once that id's heartbeat has gone stale.
   */
  soleServer?: boolean;
}

/** How often a replica looks for builds queued on other replicas and for builds of replicas that have gone. */
export const BUILD_POLL_MS = 2_000;

/** Stops a build this replica no longer runs: cancelled on another replica, or queued again by one. */
class ClaimLostError extends Error {}

export interface BuildLogEvent {
  jobId: string;
  /** Byte offset just after this line in the log file: a client resumes from it after a reconnect. */
  offset: number;
  line: string;
}

/**
 * Build jobs: persisted, run in submission order, `concurrency` at a time per replica (one by
 * default: an image build is disk- and CPU-heavy). Replicas on one database share the queue: each
 * job is claimed by one of them in the database. Each job's log is a file in the shared data
 * folder, streamed live to watchers. A job interrupted by a stop, or running on a replica that has
 * gone, is queued again (its finished steps are cached).
 */
export class BuildQueueService extends EventEmitter<{ log: [BuildLogEvent]; status: [BuildJob] }> {
  private readonly running = new Map<string, AbortController>();
  /** Starting jobs and cancelling queued ones take turns on this chain; it never rejects. */
  private pumping: Promise<void> = Promise.resolve();
  private stopped = false;
  private poller: NodeJS.Timeout | null = null;
  private lastCreatedAt = 0;
  /** Appends to one log file are chained, so lines keep their order and offsets are exact. */
  private readonly logWrites = new Map<string, Promise<number>>();

  constructor(private readonly options: BuildQueueOptions) {
    super();
    mkdirSync(options.logDirectory, { recursive: true });
  }

  async start(): Promise<void> {
    await this.inTurn(() => this.patrol());
    this.pump();
    // Jobs submitted here start at once; those submitted on other replicas are found by polling.
    let round: Promise<void> | null = null;
    this.poller = setInterval(() => {
      // A round still waiting for a slow database is not joined by another.
      round ??= this.inTurn(() => this.patrol())
        .then(
          () => this.pump(),
          // The database health check reports outages; a missed round only delays builds.
          (error: unknown) => this.options.logger.debug({ err: error }, 'build queue round skipped'),
        )
        .finally(() => (round = null));
    }, BUILD_POLL_MS);
    this.poller.unref();
  }

  /** Interrupts running builds and queues them again, for another replica or the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.poller) clearInterval(this.poller);
    // A job the queue is starting right now is in `running` only once this turn is over.
    await this.pumping;
    for (const controller of this.running.values()) controller.abort(new Error('server stopping'));
    while (this.running.size > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  async submit(request: BuildRequest): Promise<BuildJob> {
    try {
      this.options.validate(request);
    } catch (error) {
      // Whatever is wrong with a request (unknown recipe, MCU board) is the caller's to fix: a 400.
      if (error instanceof BoardfleetError) throw new BoardfleetError('invalid-request', error.message);
      throw error;
    }
    const id = generateId('bld');
    // Jobs run in created_at order and ids are random: submits within one millisecond get
    // consecutive milliseconds, so they keep their order.
    const createdAt = Math.max(this.options.clock.now(), this.lastCreatedAt + 1);
    this.lastCreatedAt = createdAt;
    await this.options.jobs.insert({ id, ...request, createdAt });
    const job = await this.getOrThrow(id);
    this.emit('status', job);
    this.pump();
    return job;
  }

  async getOrThrow(id: string): Promise<BuildJob> {
    const job = await this.options.jobs.get(id);
    if (!job) throw notFound(`build ${id}`);
    return job;
  }

  list(limit: number, offset: number): Promise<BuildJob[]> {
    return this.options.jobs.list(limit, offset);
  }

  /** Cancels a queued job at once, a running one at its next step. */
  async cancel(id: string): Promise<BuildJob> {
    // In turn with starting jobs, so a job cannot start while its cancel is being written.
    const runner = await this.inTurn(async () => {
      const job = await this.getOrThrow(id);
      if (job.state !== 'queued' && job.state !== 'running') {
        throw new BoardfleetError('conflict', `build ${id} has already ended (${job.state})`);
      }
      const controller = this.running.get(id);
      if (controller) return controller;
      // Queued, or running on another replica, which stops it when it sees it ended (BUILD_POLL_MS).
      // The line comes first: a watcher on any replica reads the log to its end once the job has ended.
      await this.appendLog(id, job.state === 'queued' ? 'cancelled before it started' : 'cancelled');
      await this.options.jobs.finish(id, { state: 'cancelled' }, this.options.clock.now());
      return null;
    });
    if (runner) {
      runner.abort(new BoardfleetError('build-cancelled', 'cancelled by an operator'));
      await this.waitUntilEnded(id);
    }
    const ended = await this.getOrThrow(id);
    this.emit('status', ended);
    return ended;
  }

  logPath(id: string): string {
    return join(this.options.logDirectory, `${id}.log`);
  }

  /** The log from a byte offset on (for a watcher that reconnects or polls), as text. */
  async readLog(id: string, fromOffset = 0): Promise<{ text: string; offset: number }> {
    await this.getOrThrow(id);
    const file = await open(this.logPath(id), 'r').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return null;
      throw error;
    });
    if (!file) return { text: '', offset: 0 };
    try {
      const { size } = await file.stat();
      const start = Math.max(0, Math.min(fromOffset, size));
      // Only the part asked for: watchers poll long logs every second.
      const rest = Buffer.alloc(size - start);
      for (let read = 0; read < rest.length;) {
        const { bytesRead } = await file.read(rest, read, rest.length - read, start + read);
        if (bytesRead === 0) break;
        read += bytesRead;
      }
      return { text: rest.toString('utf8'), offset: size };
    } finally {
      await file.close();
    }
  }

  /** Runs `work` after the queue's current turn; the chain goes on whether `work` fails or not. */
  private inTurn<T>(work: () => Promise<T>): Promise<T> {
    const result = this.pumping.then(work);
    this.pumping = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /**
   * Stops the builds this replica no longer runs, and queues again those of replicas that have
   * gone. Runs in turn, so that no claim of this replica is under way meanwhile.
   */
  private async patrol(): Promise<void> {
    const me = this.options.replicas.id;
    const claims = await this.options.jobs.claims();
    for (const [id, controller] of this.running) {
      const claim = claims.find((running) => running.id === id);
      if (claim?.claimedBy === me) continue;
      controller.abort(
        new ClaimLostError(
          claim ? `taken over by replica ${claim.claimedBy}` : 'ended or queued again on another replica',
        ),
      );
    }
    const gone = new Map<string | null, boolean>();
    for (const { id, claimedBy } of claims) {
      if (claimedBy === me) continue;
      if (!gone.has(claimedBy)) gone.set(claimedBy, await this.hasGone(claimedBy));
      if (!gone.get(claimedBy) || !(await this.options.jobs.requeue(id, claimedBy))) continue;
      const who = claimedBy === null ? 'the server' : `replica ${claimedBy}`;
      await this.appendLog(id, `${who} running this build has gone; the build is queued again`);
      this.options.logger.warn(
        { build: id, replica: claimedBy },
        'build of a server that has gone queued again',
      );
      this.emit('status', await this.getOrThrow(id));
    }
  }

  /** Whether the replica that claimed a build has gone (null: a server from before replicas). */
  private async hasGone(replica: string | null): Promise<boolean> {
    return (
      replica === null || this.options.soleServer === true || !(await this.options.replicas.isAlive(replica))
    );
  }

  private pump(): void {
    void this.inTurn(async () => {
      while (!this.stopped && this.running.size < this.options.concurrency) {
        const me = this.options.replicas.id;
        const next = await this.options.jobs.claimNext(me, this.options.clock.now());
        if (!next) return;
        if (this.stopped) {
          // Claimed as the stop came: back to the queue, for another replica or the next start.
          await this.options.jobs.requeue(next.id, me);
          return;
        }
        const controller = new AbortController();
        this.running.set(next.id, controller);
        this.emit('status', next);
        void this.run(next, controller.signal)
          .catch((error: unknown) =>
            this.options.logger.error({ err: error, build: next.id }, 'build not recorded'),
          )
          .finally(() => {
            this.running.delete(next.id);
            if (!this.stopped) this.pump();
          });
      }
    }).catch((error: unknown) => this.options.logger.error({ err: error }, 'build queue failed'));
  }

  private async run(job: BuildJob, signal: AbortSignal): Promise<void> {
    const me = this.options.replicas.id;
    const started = this.options.clock.now();
    // A build this replica lost belongs to another run now: its log is that run's.
    const lost = () => signal.aborted && signal.reason instanceof ClaimLostError;
    let lastProgressWrite = Promise.resolve();
    const reporter: BuildReporter = {
      signal,
      log: (line) => {
        if (!lost()) void this.appendLog(job.id, line);
      },
      progress: (step, percent) => {
        const rounded = Math.max(0, Math.min(100, Math.round(percent)));
        lastProgressWrite = lastProgressWrite
          .then(() => this.options.jobs.updateProgress(job.id, me, step, rounded))
          .then(async () => {
            this.emit('status', await this.getOrThrow(job.id));
          })
          .catch((error: unknown) => this.options.logger.warn({ err: error }, 'build progress not saved'));
      },
    };
    await this.appendLog(job.id, `build ${job.id}: recipe ${job.recipe}, board ${job.board}`);
    try {
      // Cancelled or stopped while the first line was written: do not start the runner at all.
      signal.throwIfAborted();
      const files = await this.options.runner({ recipe: job.recipe, board: job.board }, reporter);
      signal.throwIfAborted();
      reporter.progress('storing artifacts', 99);
      const seconds = ((this.options.clock.now() - started) / 1000).toFixed(1);
      await this.appendLog(job.id, `built in ${seconds} s; storing ${files.length} signed artifacts`);
      const outputs = await this.store(job, files);
      await lastProgressWrite;
      await this.options.jobs.finish(job.id, { state: 'succeeded', outputs }, this.options.clock.now(), me);
    } catch (error) {
      await lastProgressWrite;
      if (lost()) {
        this.options.logger.warn({ build: job.id, err: signal.reason }, 'build stopped: no longer run here');
      } else {
        await this.recordEnd(job.id, error, signal);
      }
    }
    this.emit('status', await this.getOrThrow(job.id));
  }

  /** Writes how a build that did not succeed ended; one interrupted by a stop goes back to the queue. */
  private async recordEnd(id: string, error: unknown, signal: AbortSignal): Promise<void> {
    const me = this.options.replicas.id;
    const cancelled = signal.aborted;
    const message = error instanceof Error ? error.message : String(error);
    if (cancelled && this.stopped) {
      await this.appendLog(
        id,
        'interrupted: the server is stopping; the build is queued again for another server or its next start',
      );
      await this.options.jobs.requeue(id, me);
      return;
    }
    await this.appendLog(id, cancelled ? 'cancelled' : `failed: ${message}`);
    await this.options.jobs.finish(
      id,
      cancelled ? { state: 'cancelled' } : { state: 'failed', error: message },
      this.options.clock.now(),
      me,
    );
    if (!cancelled) this.options.logger.warn({ build: id, err: error }, 'build failed');
  }

  /** Stores every output, and the log last, as signed artifacts. */
  private async store(job: BuildJob, files: BuiltFile[]): Promise<BuildOutput[]> {
    const outputs: BuildOutput[] = [];
    for (const file of files) outputs.push(await this.storeFile(file));
    const payload =
      files.find((file) => file.role === 'update-payload' || file.role === 'unikernel') ?? files[0];
    if (payload) {
      await this.logWrites.get(job.id);
      outputs.push(
        await this.storeFile({
          role: 'build-log',
          path: this.logPath(job.id),
          // Every build has its own log (times differ), so each one is its own artifact.
          name: `${payload.name}-build-log-${job.id}`,
          version: payload.version,
          kind: 'build-log',
          boards: payload.boards,
        }),
      );
    }
    return outputs;
  }

  private async storeFile(file: BuiltFile): Promise<BuildOutput> {
    const [sha256, { size }] = await Promise.all([sha256File(file.path), stat(file.path)]);
    const upload = this.options.artifacts.parseUpload({
      name: file.name,
      version: file.version,
      kind: file.kind,
      boards: file.boards.join(','),
      sha256,
      size: String(size),
    });
    const { artifact } = await this.options.artifacts.upload(upload, createReadStream(file.path));
    return {
      role: file.role,
      artifactId: artifact.id,
      name: artifact.name,
      version: artifact.version,
      size: artifact.size,
      sha256: artifact.sha256,
    };
  }

  private appendLog(id: string, line: string): Promise<number> {
    const stamped = `${new Date(this.options.clock.now()).toISOString()} ${line.replace(/\n+$/, '')}\n`;
    const previous = this.logWrites.get(id) ?? Promise.resolve(0);
    const next = previous.then(async () => {
      await appendFile(this.logPath(id), stamped);
      const offset = (await stat(this.logPath(id))).size;
      this.emit('log', { jobId: id, offset, line: stamped.slice(0, -1) });
      return offset;
    });
    const settled = next.catch(() => 0);
    this.logWrites.set(id, settled);
    // Forget a finished chain, unless a later line has been chained on it meanwhile.
    void settled.then(() => {
      if (this.logWrites.get(id) === settled) this.logWrites.delete(id);
    });
    return next;
  }

  private async waitUntilEnded(id: string): Promise<void> {
    while (this.running.has(id)) await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
