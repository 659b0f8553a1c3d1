import { Controller, Inject, Param, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { listShellSessionsQuery, type ShellSessionList } from '../../protocol/api/device-shell.ts';
import { operations } from '../../protocol/api/operations.ts';
import { ApiRoute } from '../common/api-route.ts';
import { notFound } from '../common/errors.ts';
import { parseBody } from '../common/zod-body.ts';
import { ShellSessionRepository } from './shell-session.repository.ts';

/** The record of remote shell sessions; the terminal itself is the WebSocket of shell-upgrade.ts. */
@Controller()
export class ShellSessionsController {
  constructor(@Inject(ShellSessionRepository) private readonly sessions: ShellSessionRepository) {}

  @ApiRoute(operations.listShellSessions)
  async list(@Query() query: unknown): Promise<ShellSessionList> {
    const filter = parseBody(listShellSessionsQuery, query);
    return {
      sessions: await this.sessions.list({
        limit: filter.limit,
        ...(filter.device && { deviceId: filter.device }),
      }),
      limit: filter.limit,
    };
  }

  @ApiRoute(operations.getShellTranscript)
  async transcript(@Param('id') id: string, @Res() response: Response): Promise<void> {
    const session = await this.sessions.get(id);
    if (!session) throw notFound(`shell session ${id}`);
    const transcript = await this.sessions.transcript(id);
    if (transcript === null)
      throw notFound(`a transcript of shell session ${id} (kept only with BOARDFLEET_SHELL_TRANSCRIPTS=on)`);
    response.type('text/plain; charset=utf-8').send(transcript);
  }
}
