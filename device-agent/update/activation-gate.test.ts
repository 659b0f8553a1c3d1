import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { activationGate } from './activation-gate.ts';

const at = (hours: number, minutes: number) => new Date(2026, 10, 29, hours, minutes);

describe('activation gate', () => {
  it('lets activation through only inside the update window, also across midnight', () => {
    const night = activationGate({ window: '22:30-04:00' });
    expect(night(at(23, 0))).toBeNull();
    expect(night(at(3, 59))).toBeNull();
    expect(night(at(4, 0))).toBe('outside the update window 22:30-04:00');
    expect(night(at(12, 0))).toBe('outside the update window 22:30-04:00');
    const morning = activationGate({ window: '02:00-04:30' });
    expect(morning(at(2, 0))).toBeNull();
    expect(morning(at(1, 59))).not.toBeNull();
  });

  it('holds activation while the lock file exists, unless the process it names is gone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-lock-'));
    const lockFile = join(dir, 'update.lock');
    const gate = activationGate({ lockFile });
    expect(gate(new Date())).toBeNull();
    writeFileSync(lockFile, '');
    expect(gate(new Date())).toBe(`the update lock ${lockFile} is held`);
    writeFileSync(lockFile, String(process.pid));
    expect(gate(new Date())).toBe(`the update lock ${lockFile} is held by pid ${process.pid}`);
    // A pid far above pid_max names no process: a lock left by a crashed app does not block forever.
    writeFileSync(lockFile, '99999999');
    expect(gate(new Date())).toBeNull();
    rmSync(dir, { recursive: true });
  });

  it('refuses a window it cannot read, naming the expected form', () => {
    expect(() => activationGate({ window: '25:00-01:00' })).toThrow(
      'update window "25:00-01:00" is not HH:MM-HH:MM',
    );
    expect(() => activationGate({ window: '02:00-02:00' })).toThrow('is empty');
  });
});
