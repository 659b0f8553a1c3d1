import { join } from 'node:path';
import type { Logger } from 'pino';
import { readJson, writeJsonAtomically } from '../../lib/atomic-file.ts';
import { SHELL_ENABLED_VARIABLE, shellEnabled } from '../../protocol/device-config.ts';
import {
  SHELL_MAX_SESSIONS_PER_DEVICE,
  SHELL_OPEN_MAX_AGE_MS,
  type ShellInput,
  type ShellOutput,
} from '../../protocol/device-shell.ts';
import { reapLeftoverShells, type ShellHost, shellHost, startShellProcess } from './shell-process.ts';
import { ShellSession } from './shell-session.ts';

/** Used when an `open` names no idle timeout (the server always sends one). */
const DEFAULT_IDLE_SECONDS = 900;
/** Ended sessions remembered, so a redelivered message of one does not start it again. */
const ENDED_REMEMBERED = 256;

export interface ShellSessionsOptions {
  /** Publishes on `shell-output` (QoS 1); false when offline. */
  publish: (message: ShellOutput) => Promise<boolean>;
  /** The configuration variables the device applied: the shell runs only where they enable it. */
  variables: () => Readonly<Record<string, string>>;
  logger: Logger;
  now?: () => number;
  host?: ShellHost;
  maxSessions?: number;
  /** Where the running shells' process groups are noted, so a restarted agent ends those it left. */
  dataDir?: string;
}

/**
 * The device's end of the remote shell: opens sessions the server asks for (where enabled, within
 * the limit, fresh), routes each `shell-input` message to its session, ends them all when the
 * device goes offline or the agent stops.
 */
export class ShellSessions {
  private readonly sessions = new Map<string, ShellSession>();
  private readonly ended = new Set<string>();
  private readonly now: () => number;
  private readonly host: ShellHost;

  private readonly groupsFile: string | null;

  constructor(private readonly options: ShellSessionsOptions) {
    this.now = options.now ?? Date.now;
    this.host = options.host ?? shellHost();
    this.groupsFile = options.dataDir ? join(options.dataDir, 'shell-groups.json') : null;
    if (this.groupsFile) {
      const reaped = reapLeftoverShells(readJson<{ groups: number[] }>(this.groupsFile)?.groups ?? []);
      if (reaped > 0) options.logger.warn({ reaped }, 'ended shells a previous agent left running');
      this.noteGroups();
    }
  }

  get running(): number {
    return this.sessions.size;
  }

  receive(message: ShellInput): void {
    const session = this.sessions.get(message.session);
    if (session) return session.input(message);
    if (message.type === 'open' && !this.ended.has(message.session)) this.open(message);
  }

  /** Ends every session without telling the server (it is out of reach, or the agent stops). */
  stopAll(reason: string): void {
    for (const session of this.sessions.values()) session.end(reason, { silent: true });
  }

  private open(message: ShellInput): void {
    const age = this.now() - message.at;
    // A redelivery from before a reconnect: whoever asked has long been told the device did not answer.
    if (age > SHELL_OPEN_MAX_AGE_MS) {
      this.options.logger.info({ session: message.session, ageMs: age }, 'stale shell open dropped');
      return this.remember(message.session);
    }
    const refusal = this.refusal();
    if (refusal) {
      this.options.logger.warn({ session: message.session, reason: refusal }, 'shell refused');
      this.remember(message.session);
      void this.options
        .publish({ session: message.session, seq: 0, type: 'refused', reason: refusal, at: this.now() })
        .catch(() => undefined);
      return;
    }
    const process = startShellProcess(this.host, {
      cols: message.cols ?? 80,
      rows: message.rows ?? 24,
      ...(message.command !== undefined && { command: message.command }),
    });
    this.options.logger.info(
      { session: message.session, mode: process.mode, command: message.command !== undefined },
      'shell session opened',
    );
    const session = new ShellSession(
      {
        id: message.session,
        process,
        idleSeconds: message.idleSeconds ?? DEFAULT_IDLE_SECONDS,
        publish: this.options.publish,
        now: this.now,
        logger: this.options.logger,
        onEnd: (id) => {
          this.sessions.delete(id);
          this.remember(id);
          this.noteGroups();
          this.options.logger.info({ session: id }, 'shell session ended');
        },
      },
      message.seq,
    );
    this.sessions.set(message.session, session);
    this.noteGroups();
  }

  private noteGroups(): void {
    if (!this.groupsFile) return;
    const groups = [...this.sessions.values()].flatMap((session) => session.processGroup ?? []);
    writeJsonAtomically(this.groupsFile, { groups });
  }

  private refusal(): string | null {
    // The server checks too; this side holds even if the server were fooled (defence in depth).
    if (!shellEnabled(this.options.variables()))
      return `the shell is off on this device: its applied configuration does not set ${SHELL_ENABLED_VARIABLE}=on`;
    const limit = this.options.maxSessions ?? SHELL_MAX_SESSIONS_PER_DEVICE;
    if (this.sessions.size >= limit)
      return `this device already runs ${this.sessions.size} shell sessions, its limit: close one first`;
    return null;
  }

  private remember(id: string): void {
    this.ended.add(id);
    if (this.ended.size > ENDED_REMEMBERED) this.ended.delete(this.ended.values().next().value as string);
  }
}
