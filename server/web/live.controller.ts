import { type BeforeApplicationShutdown, Controller, Inject, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { liveQuery } from '../../protocol/api/live.ts';
import { operations } from '../../protocol/api/operations.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { type LiveEvent, LiveEventsService } from './live-events.service.ts';

/** A comment line this often keeps proxies and the browser from closing an idle stream. */
export const KEEP_ALIVE_MS = 15_000;
/** A client this far behind is dropped rather than buffered without end; it reconnects and refetches. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

@Controller()
export class LiveController implements BeforeApplicationShutdown {
  /** Open streams: each would otherwise hold up the HTTP server's close. */
  private readonly streams = new Set<Response>();

  constructor(@Inject(LiveEventsService) private readonly live: LiveEventsService) {}

  beforeApplicationShutdown(): void {
    for (const response of this.streams) response.end();
  }

  @ApiRoute(operations.watchLive)
  stream(@Query() query: unknown, @Res() response: Response): void {
    const { health } = parseBody(liveQuery, query);
    response.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      // Proxies such as nginx would otherwise hold events back in their buffers.
      'X-Accel-Buffering': 'no',
    });
    const send = (event: LiveEvent) => {
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
    unsubscribe = this.live.subscribe(send, { health });
    response.on('close', close);
  }
}
