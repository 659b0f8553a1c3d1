import { readFileSync } from 'node:fs';
import { BoardfleetError } from '../../protocol/errors.ts';

/**
 * When a new version may be activated. An application holds off updates by creating the lock
 * file (balena's update locks), e.g. during a print job or a measurement; an update window lets
 * activation happen only at quiet hours. Downloads and verification go ahead either way: only the
 * switch waits. Returns why it must wait, or null when it may go on.
 */
export type ActivationGate = (now: Date) => string | null;

export interface ActivationGateOptions {
  /** Present: updates wait. A lock naming a process (its pid as the file's content) that is gone is stale. */
  lockFile?: string;
  /** `HH:MM-HH:MM` in the device's local time; may cross midnight (`22:00-04:00`). */
  window?: string;
}

export function activationGate(options: ActivationGateOptions): ActivationGate {
  const window = options.window ? parseWindow(options.window) : null;
  return (now) => {
    if (options.lockFile) {
      const holder = lockHolder(options.lockFile);
      if (holder !== null)
        return `the update lock ${options.lockFile} is held${holder ? ` by pid ${holder}` : ''}`;
    }
    if (window) {
      const minute = now.getHours() * 60 + now.getMinutes();
      const inside =
        window.from <= window.to
          ? minute >= window.from && minute < window.to
          : minute >= window.from || minute < window.to;
      if (!inside) return `outside the update window ${options.window}`;
    }
    return null;
  };
}

/** '' for a lock without a pid, the pid of a live holder, or null when there is no (live) lock. */
function lockHolder(path: string): string | null {
  let content: string;
  try {
    content = readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
  if (!/^\d+$/.test(content)) return '';
  try {
    process.kill(Number(content), 0);
    return content;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM' ? content : null;
  }
}

function parseWindow(text: string): { from: number; to: number } {
  const match = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/.exec(text);
  if (!match) {
    throw new BoardfleetError(
      'invalid-config',
      `update window "${text}" is not HH:MM-HH:MM (e.g. 02:00-04:30)`,
    );
  }
  const [, fromHours, fromMinutes, toHours, toMinutes] = match.map(Number) as number[];
  const from = fromHours! * 60 + fromMinutes!;
  const to = toHours! * 60 + toMinutes!;
  if (from === to) throw new BoardfleetError('invalid-config', `update window "${text}" is empty`);
  return { from, to };
}
