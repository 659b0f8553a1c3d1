import { Inject, Injectable } from '@nestjs/common';
import type { Selectable } from 'kysely';
import type { AuditChannel } from '../../protocol/api/audit.ts';
import type { ShellSessionRecord } from '../../protocol/api/device-shell.ts';
import type { ShellMode } from '../../protocol/device-shell.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { ShellSessionTable } from '../db/schema.ts';

export interface NewShellSession {
  id: string;
  deviceId: string;
  actor: string;
  actorTokenId: string;
  via: AuditChannel;
  command: string | null;
  startedAt: number;
}

export interface ShellSessionEnd {
  endedAt: number;
  endReason: string;
  exitCode: number | null;
  mode: ShellMode | null;
  bytesIn: number;
  bytesOut: number;
  transcript: string | null;
}

/** The `shell_sessions` table: a row when a session opens, completed when it ends. */
@Injectable()
export class ShellSessionRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(session: NewShellSession): Promise<void> {
    await this.db
      .insertInto('shell_sessions')
      .values({
        id: session.id,
        device_id: session.deviceId,
        actor: session.actor,
        actor_token_id: session.actorTokenId,
        via: session.via,
        command: session.command,
        mode: null,
        started_at: session.startedAt,
        ended_at: null,
        end_reason: null,
        exit_code: null,
        bytes_in: 0,
        bytes_out: 0,
        transcript: null,
      })
      .execute();
  }

  async finish(id: string, end: ShellSessionEnd): Promise<void> {
    await this.db
      .updateTable('shell_sessions')
      .set({
        ended_at: end.endedAt,
        end_reason: end.endReason,
        exit_code: end.exitCode,
        mode: end.mode,
        bytes_in: end.bytesIn,
        bytes_out: end.bytesOut,
        transcript: end.transcript,
      })
      .where('id', '=', id)
      .where('ended_at', 'is', null)
      .execute();
  }

  /** Newest first. */
  async list(filter: { deviceId?: string; limit: number }): Promise<ShellSessionRecord[]> {
    let query = this.db
      .selectFrom('shell_sessions')
      .select([
        'id',
        'device_id',
        'actor',
        'actor_token_id',
        'via',
        'command',
        'mode',
        'started_at',
        'ended_at',
        'end_reason',
        'exit_code',
        'bytes_in',
        'bytes_out',
        (eb) => eb('transcript', 'is not', null).as('has_transcript'),
      ]);
    if (filter.deviceId !== undefined) query = query.where('device_id', '=', filter.deviceId);
    const rows = await query.orderBy('started_at', 'desc').orderBy('id').limit(filter.limit).execute();
    return rows.map((row) => toRecord(row, Boolean(row.has_transcript)));
  }

  async get(id: string): Promise<ShellSessionRecord | null> {
    const row = await this.db
      .selectFrom('shell_sessions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toRecord(row, row.transcript !== null) : null;
  }

  /** The kept output; null when the session is unknown or kept none. */
  async transcript(id: string): Promise<string | null> {
    const row = await this.db
      .selectFrom('shell_sessions')
      .select('transcript')
      .where('id', '=', id)
      .executeTakeFirst();
    return row?.transcript ?? null;
  }
}

function toRecord(
  row: Omit<Selectable<ShellSessionTable>, 'transcript'>,
  transcript: boolean,
): ShellSessionRecord {
  return {
    id: row.id,
    deviceId: row.device_id,
    actor: row.actor,
    actorTokenId: row.actor_token_id,
    via: row.via,
    command: row.command,
    mode: row.mode === 'pty' || row.mode === 'pipes' ? row.mode : null,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    endReason: row.end_reason,
    exitCode: row.exit_code,
    bytesIn: row.bytes_in,
    bytesOut: row.bytes_out,
    transcript,
  };
}
