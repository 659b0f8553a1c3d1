import { type BeforeApplicationShutdown, Controller, Inject, Param, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { type DeviceLogEvents, deviceLogsQuery, sinceTime } from '../../protocol/api/device-logs.ts';
import { operations } from '../../protocol/api/operations.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiRoute } from '../common/api-route.ts';
import { notFound } from '../common/errors.ts';
import { parseBody } from '../common/zod-body.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import { KEEP_ALIVE_MS } from '../web/live.controller.ts';
import { LogRelay } from './log-relay.ts';

/** A reader this far behind is cut off rather than buffered without end; it resumes with `after`. */
const MAX_BUFFERED_BYTES = 1024 * 1024;

@Controller()
export class DeviceLogsController implements BeforeApplicationShutdown {
  constructor(
    @Inject(LogRelay) private readonly relay: LogRelay,
    @Inject(DeviceRepository) private readonly devices: DeviceRepository,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  beforeApplicationShutdown(): void {
    this.relay.stop();
  }

  @ApiRoute(operations.watchDeviceLogs)
  async stream(@Param('id') id: string, @Query() query: unknown, @Res() response: Response): Promise<void> {
    const request = parseBody(deviceLogsQuery, query);
    const device = await this.devices.get(id);
    if (!device || device.revokedAt !== null) throw notFound(`device ${id}`);
    const follow = request.follow === 'true';
    if (!device.online && !follow) {
      throw new BoardfleetError(
        'device-offline',
        `device ${device.name} (${id}) is offline: its logs stay on it until it is back (follow waits for it)`,
      );
    }
    response.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    const send = <E extends keyof DeviceLogEvents>(event: E, data: DeviceLogEvents[E], seq?: number) => {
      if (response.writableEnded) return;
      if (response.writableLength > MAX_BUFFERED_BYTES) {
        close();
        response.end(
          `event: error\ndata: ${JSON.stringify({ code: 'too-slow', message: 'the reader fell too far behind: resume with after' })}\n\n`,
        );
        return;
      }
      response.write(
        `${seq === undefined ? '' : `id: ${seq}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
      );
    };
    const since = request.since === undefined ? null : sinceTime(request.since, this.clock.now());
    const close = this.relay.open(
      id,
      {
        ...((request.app !== undefined || request.board !== undefined) && {
          sources: [
            ...(request.app !== undefined ? [`app:${request.app}` as const] : []),
            ...(request.board !== undefined ? [`board:${request.board}` as const] : []),
          ],
        }),
        ...(request.baud !== undefined && { baud: request.baud }),
        ...(request.after !== undefined
          ? { afterSeq: request.after }
          : since !== null
            ? { sinceAt: since }
            : { tail: request.limit }),
        follow,
        online: device.online,
      },
      {
        line: (line) => send('line', line, line.seq),
        caughtUp: (through) => send('caught-up', { through }),
        device: (online) => send('device', { online }),
        error: (code, message) => {
          send('error', { code, message });
          response.end();
        },
        end: () => response.end(),
      },
    );
    const keepAlive = setInterval(() => response.write(': keep-alive\n\n'), KEEP_ALIVE_MS);
    response.on('close', () => {
      clearInterval(keepAlive);
      close();
    });
  }
}
