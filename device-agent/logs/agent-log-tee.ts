import type { LogRing } from './log-ring.ts';

/** pino's numeric levels from which a line counts as the agent's stderr. */
const WARN_LEVEL = 40;
const LEVEL_NAMES: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};
/** Lines logged before the ring opens (the data dir is known only then) are kept up to this many. */
const EARLY_LINES_MAX = 500;

interface PinoRecord {
  level?: number;
  msg?: string;
  app?: boolean;
  err?: { message?: string };
}

/**
 * The second destination of the agent's pino logger (see `createLogger`): each record becomes a
 * line of the `agent` source in the log ring, as `msg` (with the level before it unless info, and
 * an error's message after it). Lines an app printed are left out: they are already in the ring
 * under `app:<name>`.
 */
export class AgentLogTee {
  private ring: LogRing | null = null;
  private early: Array<[stream: 'stdout' | 'stderr', text: string]> = [];

  /** Called by pino with one JSON record per call. */
  write(chunk: string): void {
    let record: PinoRecord;
    try {
      record = JSON.parse(chunk) as PinoRecord;
    } catch {
      return;
    }
    if (record.app === true || typeof record.msg !== 'string') return;
    const level = record.level ?? 30;
    const label = LEVEL_NAMES[level];
    const text = `${label ? `${label}: ` : ''}${record.msg}${record.err?.message ? ` (${record.err.message})` : ''}`;
    const stream = level >= WARN_LEVEL ? 'stderr' : 'stdout';
    if (this.ring) this.ring.append('agent', stream, text);
    else if (this.early.length < EARLY_LINES_MAX) this.early.push([stream, text]);
  }

  /** From now on records go to `ring`, after the ones logged before it opened. */
  attach(ring: LogRing): void {
    this.ring = ring;
    for (const [stream, text] of this.early) ring.append('agent', stream, text);
    this.early = [];
  }
}
