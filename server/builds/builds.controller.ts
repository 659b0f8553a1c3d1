import { Body, Controller, Get, HttpCode, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
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
export class BuildsController {
  constructor(@Inject(BuildQueueService) private readonly builds: BuildQueueService) {}

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
    const resumeFrom = Number(request.header('last-event-id') ?? 0) || 0;
    let job = await this.builds.getOrThrow(id);
    response.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
    });
    const send = (event: string, data: unknown, eventId?: number) =>
      response.write(
        `${eventId !== undefined ? `id: ${eventId}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
      );

    // Subscribe before reading what is written, so no line falls between the two.
    let sentUpTo = resumeFrom;
    const pending: BuildLogEvent[] = [];
    let replaying = true;
    const onLog = (event: BuildLogEvent) => {
      if (event.jobId !== id) return;
      if (replaying) pending.push(event);
      else if (event.offset > sentUpTo) {
        sentUpTo = event.offset;
        send('log', event.line, event.offset);
      }
    };
    const onStatus = (status: BuildJob) => {
      if (status.id !== id) return;
      job = status;
      send('status', status);
      if (ENDED.has(status.state)) finish();
    };
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      this.builds.off('log', onLog);
      this.builds.off('status', onStatus);
      void this.builds.readLog(id, sentUpTo).then((rest) => {
        for (const line of rest.text.split('\n').filter(Boolean)) send('log', line);
        send('end', { state: job.state }, rest.offset);
        response.end();
      });
    };
    this.builds.on('log', onLog);
    this.builds.on('status', onStatus);
    request.on('close', () => {
      this.builds.off('log', onLog);
      this.builds.off('status', onStatus);
    });

    const written = await this.builds.readLog(id, resumeFrom);
    let offset = resumeFrom;
    for (const line of written.text.split('\n')) {
      if (!line) continue;
      offset += Buffer.byteLength(line) + 1;
      send('log', line, offset);
    }
    sentUpTo = written.offset;
    replaying = false;
    for (const event of pending) onLog(event);
    send('status', job);
    if (ENDED.has(job.state)) finish();
  }

  @Post(':id/cancel')
  @HttpCode(200)
  @ApiOperation({ summary: 'Cancel a queued or running build' })
  cancel(@Param('id') id: string) {
    return this.builds.cancel(id);
  }
}
