import {
  type BeforeApplicationShutdown,
  Body,
  Controller,
  Get,
  HttpCode,
  Inject,
  Param,
  Post,
  Query,
  Req,
  Res,
} from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { parseBody } from '../common/zod-body.ts';
import type { BuildJob } from './build-job.repository.ts';
import { type BuildLogEvent, BuildQueueService } from './build-queue.service.ts';

export const createBuildBody = z.strictObject({
  recipe: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'a recipe name from firmware-recipes/, e.g. pi-minimal'),
  board: z.string().min(1).max(64),
});

const pageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});

const logQuery = z.strictObject({ offset: z.coerce.number().int().min(0).default(0) });

const ENDED = new Set(['succeeded', 'failed', 'cancelled']);

@ApiTags('builds')
@ApiBearerAuth()
@Controller('api/v1/builds')
export class BuildsController implements BeforeApplicationShutdown {
  /** Open event streams: a watcher's open connection would otherwise hold up the HTTP server's close. */
  private readonly streams = new Set<Response>();

  constructor(@Inject(BuildQueueService) private readonly builds: BuildQueueService) {}

  /** Ends every event stream without `end`: watchers reconnect with Last-Event-ID once the server is back. */
  beforeApplicationShutdown(): void {
    for (const response of this.streams) response.end();
  }

  @Post()
  @HttpCode(202)
  @ApiOperation({ summary: 'Queue an image build of a recipe for a board' })
  @ApiBody({ schema: z.toJSONSchema(createBuildBody) as object })
  create(@Body() body: unknown) {
    return this.builds.submit(parseBody(createBuildBody, body));
  }

  @Get()
  @ApiOperation({ summary: 'Build jobs, newest first' })
  async list(@Query() query: unknown) {
    const { limit, offset } = parseBody(pageQuery, query);
    return { builds: await this.builds.list(limit, offset), limit, offset };
  }

  @Get(':id')
  @ApiOperation({ summary: 'A build: state, current step, progress, error, stored outputs' })
  get(@Param('id') id: string) {
    return this.builds.getOrThrow(id);
  }

  @Get(':id/log')
  @ApiOperation({ summary: 'The build log as text, from a byte offset (X-Log-Offset says where it ends)' })
  async log(@Param('id') id: string, @Query() query: unknown, @Res() response: Response) {
    const { offset } = parseBody(logQuery, query);
    const log = await this.builds.readLog(id, offset);
    response.setHeader('X-Log-Offset', String(log.offset));
    response.type('text/plain').send(log.text);
  }

  @Get(':id/events')
  @ApiOperation({
    summary:
      'Live log and status as server-sent events (`log`, `status`, `end`); the event id is the log offset, so a reconnect with Last-Event-ID misses nothing',
  })
  async events(@Param('id') id: string, @Req() request: Request, @Res() response: Response) {
    const lastEventId = Number(request.headers['last-event-id'] ?? 0);
    const resumeFrom = Number.isSafeInteger(lastEventId) && lastEventId > 0 ? lastEventId : 0;
    await this.builds.getOrThrow(id);
    response.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
    });
    const send = (event: string, data: unknown, eventId?: number) =>
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
    const sendStatus = async (job: BuildJob) => {
      send('status', job);
      if (!ENDED.has(job.state)) return;
      // The queue writes a job's last line before it says the job has ended.
      await catchUp();
      send('end', { state: job.state }, sentUpTo);
      close();
      response.end();
    };
    const onStatus = (job: BuildJob) => {
      if (job.id === id) enqueue(() => sendStatus(job));
    };
    const close = () => {
      closed = true;
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

  @Post(':id/cancel')
  @HttpCode(200)
  @ApiOperation({ summary: 'Cancel a queued or running build' })
  cancel(@Param('id') id: string) {
    return this.builds.cancel(id);
  }
}
