import { type BeforeApplicationShutdown, Controller, Get, Inject, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { z } from 'zod';
import { parseBody } from '../common/zod-body.ts';
import { type LiveEvent, LiveEventsService } from './live-events.service.ts';

/** A comment line this often keeps proxies and the browser from closing an idle stream. */
export const KEEP_ALIVE_MS = 15_000;
/** A client this far behind is dropped rather than buffered without end; it reconnects and refetches. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

const liveQuery = z.strictObject({
  health: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .describe('"none" for no health events, a device id for that device\'s only; default: every device\'s'),
});

@ApiTags('live')
@ApiBearerAuth()
@Controller('api/v1/live')
export class LiveController implements BeforeApplicationShutdown {
  /** Open streams: each would otherwise hold up the HTTP server's close. */
  private readonly streams = new Set<Response>();

  constructor(@Inject(LiveEventsService) private readonly live: LiveEventsService) {}

  beforeApplicationShutdown(): void {
    for (const response of this.streams) response.end();
  }

  @Get()
  @ApiOperation({
    summary:
      'Live changes as server-sent events, each with an id and JSON data: hello {serverTime} on connect, ' +
      'presence {deviceId, online}, health {deviceId, sample}, device-event {deviceId, event}, ' +
      'rollout {rolloutId, state, reason, waves[{index, name, state, counts}]} (at most 4 a second per rollout), ' +
      'build {job}; a comment every 15 s keeps the connection open. Events are not replayed: after every ' +
      '(re)connect a client reads the snapshots it shows (device list, fleet summary, rollout status…) again ' +
      'and then applies events, so its view is correct after a reconnect. Authenticate with the ' +
      'Authorization header (read the stream with fetch, not EventSource).',
  })
  stream(@Query() query: unknown, @Res() response: Response): void {
    const { health } = parseBody(liveQuery, query);
    response.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      // Proxies such as nginx would otherwise hold events back in their buffers.
      'X-Accel-Buffering': 'no',
    });
    const wanted = (event: LiveEvent) =>
      event.type !== 'health' ||
      health === undefined ||
      (health !== 'none' && (event.data as { deviceId: string }).deviceId === health);
    const send = (event: LiveEvent) => {
      if (!wanted(event)) return;
      if (response.writableLength > MAX_BUFFERED_BYTES) {
        close();
        response.end();
        return;
      }
      response.write(`id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`);
    };
    const keepAlive = setInterval(() => response.write(': keep-alive\n\n'), KEEP_ALIVE_MS);
    let unsubscribe: () => void = () => undefined;
    const close = () => {
      clearInterval(keepAlive);
      unsubscribe();
      this.streams.delete(response);
    };
    this.streams.add(response);
    unsubscribe = this.live.subscribe(send);
    response.on('close', close);
  }
}
