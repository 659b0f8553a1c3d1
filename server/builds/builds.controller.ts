import {
  type BeforeApplicationShutdown,
  Body,
  Controller,
  Inject,
  Param,
  Query,
  Req,
  Res,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import {
  type BuildEvents,
  type BuildJob,
  type BuildList,
  buildLogQuery,
  createBuildBody,
  hasBuildEnded,
  listBuildsQuery,
} from '../../protocol/api/builds.ts';
import { operations } from '../../protocol/api/operations.ts';
import { emptyBody } from '../../protocol/api/shared.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { type BuildLogEvent, BuildQueueService } from './build-queue.service.ts';

/**
 * How often a watcher reads the build's log and state itself: the queue's events tell of builds
 * run here, and the build may run on another replica (the log is in the shared data folder).
 */
export const BUILD_WATCH_POLL_MS = 1_000;

@Controller()
export class BuildsController implements BeforeApplicationShutdown {
  /** Open event streams: a watcher's open connection would otherwise hold up the HTTP server's close. */
  private readonly streams = new Set<Response>();

  constructor(@Inject(BuildQueueService) private readonly builds: BuildQueueService) {}

  /** Ends every event stream without `end`: watchers reconnect with Last-Event-ID once the server is back. */
  beforeApplicationShutdown(): void {
    for (const response of this.streams) response.end();
  }

  @ApiRoute(operations.createBuild)
  async create(@Body() body: unknown): Promise<BuildJob> {
    return this.builds.submit(parseBody(createBuildBody, body));
  }

  @ApiRoute(operations.listBuilds)
  async list(@Query() query: unknown): Promise<BuildList> {
    const { limit, offset } = parseBody(listBuildsQuery, query);
    return { builds: await this.builds.list(limit, offset), limit, offset };
  }

  @ApiRoute(operations.getBuild)
  async get(@Param('id') id: string): Promise<BuildJob> {
    return this.builds.getOrThrow(id);
  }

  @ApiRoute(operations.getBuildLog)
  async log(@Param('id') id: string, @Query() query: unknown, @Res() response: Response): Promise<void> {
    const { offset } = parseBody(buildLogQuery, query);
    const log = await this.builds.readLog(id, offset);
    response.setHeader('X-Log-Offset', String(log.offset));
    response.type('text/plain').send(log.text);
  }

  @ApiRoute(operations.watchBuild)
  async events(@Param('id') id: string, @Req() request: Request, @Res() response: Response): Promise<void> {
    const lastEventId = Number(request.headers['last-event-id'] ?? 0);
    const resumeFrom = Number.isSafeInteger(lastEventId) && lastEventId > 0 ? lastEventId : 0;
    await this.builds.getOrThrow(id);
    response.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
    });
    const send = <E extends keyof BuildEvents>(event: E, data: BuildEvents[E], eventId?: number) =>
      response.write(
        `${eventId !== undefined ? `id: ${eventId}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
      );

    // One chain for everything sent, the replay first: lines go out in log order, each once.
    let sentUpTo = resumeFrom;
    let closed = false;
    let chain = Promise.resolve();
    const enqueue = (work: () => void | Promise<void>) => {
      chain = chain
        .then(() => (closed ? undefined : work()))
        .catch((error: unknown) => {
          close();
          response.destroy(error instanceof Error ? error : new Error(String(error)));
        });
    };
    /** Sends the whole lines written after `sentUpTo`; a line still being written comes with its event. */
    const catchUp = async () => {
      const { text } = await this.builds.readLog(id, sentUpTo);
      const lines = text.split('\n');
      lines.pop();
      for (const line of lines) {
        sentUpTo += Buffer.byteLength(line) + 1;
        send('log', line, sentUpTo);
      }
    };
    const onLog = (event: BuildLogEvent) => {
      if (event.jobId !== id) return;
      enqueue(() => {
        if (event.offset <= sentUpTo) return;
        if (event.offset - Buffer.byteLength(event.line) - 1 !== sentUpTo) return catchUp();
        sentUpTo = event.offset;
        send('log', event.line, event.offset);
      });
    };
    let lastStatus = '';
    const sendStatus = async (job: BuildJob) => {
      lastStatus = JSON.stringify(job);
      send('status', job);
      if (!hasBuildEnded(job.state)) return;
      // The queue writes a job's last line before it says the job has ended.
      await catchUp();
      send('end', { state: job.state }, sentUpTo);
      close();
      response.end();
    };
    const onStatus = (job: BuildJob) => {
      if (job.id === id) enqueue(() => sendStatus(job));
    };
    const poll = setInterval(
      () =>
        enqueue(async () => {
          await catchUp();
          const job = await this.builds.getOrThrow(id);
          if (JSON.stringify(job) !== lastStatus) await sendStatus(job);
        }),
      BUILD_WATCH_POLL_MS,
    );
    poll.unref();
    const close = () => {
      closed = true;
      clearInterval(poll);
      this.streams.delete(response);
      this.builds.off('log', onLog);
      this.builds.off('status', onStatus);
    };
    // Subscribe before reading what is written, so no line falls between the two.
    this.builds.on('log', onLog);
    this.builds.on('status', onStatus);
    response.on('close', close);
    this.streams.add(response);
    enqueue(async () => {
      await catchUp();
      await sendStatus(await this.builds.getOrThrow(id));
    });
  }

  @ApiRoute(operations.cancelBuild)
  async cancel(@Param('id') id: string, @Body() body: unknown): Promise<BuildJob> {
    parseBody(emptyBody, body);
    return this.builds.cancel(id);
  }
}
