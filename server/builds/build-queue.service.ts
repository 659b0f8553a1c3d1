import { createReadStream, existsSync, mkdirSync } from 'node:fs';
import { appendFile, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { BuildJob, BuildOutput } from '../../protocol/api/builds.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ArtifactService } from '../artifacts/artifact.service.ts';
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
}

export interface BuildLogEvent {
  jobId: string;
  /** Byte offset just after this line in the log file: a client resumes from it after a reconnect. */
  offset: number;
  line: string;
}

/**
 * Build jobs: persisted, run in submission order, `concurrency` at a time (one by default: an
 * image build is disk- and CPU-heavy). Each job's log is a file, streamed live to watchers; a job
 * running when the server stopped is queued again at start (its finished steps are cached).
 */
export class BuildQueueService extends EventEmitter<{ log: [BuildLogEvent]; status: [BuildJob] }> {
  private readonly running = new Map<string, AbortController>();
  /** Starting jobs and cancelling queued ones take turns on this chain; it never rejects. */
  private pumping: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastCreatedAt = 0;
  /** Appends to one log file are chained, so lines keep their order and offsets are exact. */
  private readonly logWrites = new Map<string, Promise<number>>();

  constructor(private readonly options: BuildQueueOptions) {
    super();
    mkdirSync(options.logDirectory, { recursive: true });
  }

  async start(): Promise<void> {
    const requeued = await this.options.jobs.requeueInterrupted();
    if (requeued > 0) this.options.logger.info({ requeued }, 'builds interrupted by a restart queued again');
    this.pump();
  }

  /** Interrupts running builds; they stay `running` in the database and are queued again by {@link start}. */
  async stop(): Promise<void> {
    this.stopped = true;
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
      // Queued, or left `running` by a stopping queue: nothing runs it, so it ends here.
      await this.options.jobs.finish(id, { state: 'cancelled' }, this.options.clock.now());
      await this.appendLog(id, job.state === 'queued' ? 'cancelled before it started' : 'cancelled');
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

  /** The log from a byte offset on (for a watcher that reconnects), as text. */
  async readLog(id: string, fromOffset = 0): Promise<{ text: string; offset: number }> {
    await this.getOrThrow(id);
    const path = this.logPath(id);
    if (!existsSync(path)) return { text: '', offset: 0 };
    const content = await readFile(path);
    const start = Math.max(0, Math.min(fromOffset, content.length));
    return { text: content.subarray(start).toString('utf8'), offset: content.length };
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

  private pump(): void {
    void this.inTurn(async () => {
      while (!this.stopped && this.running.size < this.options.concurrency) {
        const next = (await this.options.jobs.queued()).find((job) => !this.running.has(job.id));
        if (!next || this.stopped) return;
        const controller = new AbortController();
        this.running.set(next.id, controller);
        try {
          await this.options.jobs.markRunning(next.id, this.options.clock.now());
          this.emit('status', await this.getOrThrow(next.id));
        } catch (error) {
          this.running.delete(next.id);
          throw error;
        }
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
    const started = this.options.clock.now();
    let lastProgressWrite = Promise.resolve();
    const reporter: BuildReporter = {
      signal,
      log: (line) => void this.appendLog(job.id, line),
      progress: (step, percent) => {
        const rounded = Math.max(0, Math.min(100, Math.round(percent)));
        lastProgressWrite = lastProgressWrite
          .then(() => this.options.jobs.updateProgress(job.id, step, rounded))
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
      await this.options.jobs.finish(job.id, { state: 'succeeded', outputs }, this.options.clock.now());
    } catch (error) {
      await lastProgressWrite;
      const cancelled = signal.aborted;
      const interrupted = cancelled && this.stopped;
      const message = error instanceof Error ? error.message : String(error);
      await this.appendLog(
        job.id,
        interrupted
          ? 'interrupted: the server is stopping; the build is queued again at its next start'
          : cancelled
            ? 'cancelled'
            : `failed: ${message}`,
      );
      // An interrupted job stays `running` so that start() queues it again.
      if (!interrupted) {
        await this.options.jobs.finish(
          job.id,
          cancelled ? { state: 'cancelled' } : { state: 'failed', error: message },
          this.options.clock.now(),
        );
      }
      if (!cancelled) this.options.logger.warn({ build: job.id, err: error }, 'build failed');
    }
    this.emit('status', await this.getOrThrow(job.id));
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
