import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import { freePort } from '../../test/support/databases.ts';
import {
  buildFixtureBundle,
  type FixtureBundle,
  removeFixtureBundles,
} from '../../test/support/unikernel-fixture.ts';
import { InstallRefusedError } from './update-strategy.ts';
import { failureReason, VmStrategy } from './vm.strategy.ts';

const manifestOf = (bundle: FixtureBundle): ArtifactManifest => ({
  schemaVersion: 1,
  name: bundle.spec.name,
  version: bundle.spec.version,
  kind: 'unikernel',
  boards: ['vm-x86_64', 'generic-x64'],
  sha256: '0'.repeat(64),
  size: 1,
  createdAt: 0,
});

/** What the strategy asked of the console uploader, in order. */
function recordingConsoles() {
  const calls: string[] = [];
  return {
    calls,
    watch: (artifact: string, version: string, file: string) =>
      void calls.push(`watch ${artifact} ${version} ${file}`),
    flush: async (artifact: string, version: string) => void calls.push(`flush ${artifact} ${version}`),
    unwatch: async (artifact: string, version: string) => void calls.push(`unwatch ${artifact} ${version}`),
    stop: async () => void calls.push('stop'),
  };
}

async function published(port: number): Promise<string> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(10_000) });
    return await response.text();
  } catch (error) {
    return `unreachable: ${(error as Error).message}`;
  }
}

describe('vm strategy with fixture bundles (TCG)', () => {
  let v1: FixtureBundle;
  let v2: FixtureBundle;
  let v3: FixtureBundle;
  let port: number;
  let root: string;
  const consoles = recordingConsoles();
  let strategy: VmStrategy;
  const signal = new AbortController().signal;

  const newStrategy = () =>
    new VmStrategy({
      root,
      publish: [{ hostPort: port, guestPort: 8080, address: '127.0.0.1' }],
      accelerator: 'tcg',
      readyTimeoutSeconds: 180,
      env: {},
      consoles,
      log: () => {},
    });

  beforeAll(async () => {
    [v1, v2, v3] = [
      await buildFixtureBundle({ version: '1.0.0' }),
      await buildFixtureBundle({ version: '2.0.0' }),
      await buildFixtureBundle({ version: '3.0.0', behaviour: 'crash' }),
    ];
    port = await freePort();
    root = join(mkdtempSync(join(tmpdir(), 'bf-vm-strategy-')), 'vm');
    strategy = newStrategy();
    await strategy.resume();
  }, 300_000);

  afterAll(async () => {
    await strategy?.stop();
    rmSync(dirname(root), { recursive: true, force: true });
    removeFixtureBundles();
  }, 120_000);

  it('refuses an artifact that is not a bundle before anything changes', async () => {
    const junk = join(root, '..', 'junk.tar');
    writeFileSync(junk, 'not a tar at all');
    await expect(strategy.install(junk, { ...manifestOf(v1), version: '0.0.1' })).rejects.toBeInstanceOf(
      InstallRefusedError,
    );
    expect(strategy.activeVersion).toBeNull();
  });

  it('installs, health-checks and commits the first version, which then answers on the published port', async () => {
    expect(await published(port)).toMatch(/^unreachable/);
    await strategy.install(v1.tarFile, manifestOf(v1));
    expect(await strategy.healthCheck(manifestOf(v1), signal)).toEqual({ healthy: true });
    await strategy.commit(manifestOf(v1));
    expect(await published(port)).toBe('hello 1.0.0\n');
    expect(JSON.parse(readFileSync(join(root, 'committed.json'), 'utf8'))).toEqual({
      artifact: 'fixture-http',
      version: '1.0.0',
    });
  }, 300_000);

  it('starts the next version beside the old one, switches the published port on commit and stops the old VM', async () => {
    await strategy.install(v2.tarFile, manifestOf(v2));
    // Both run; the published port still leads to the old one until the new one is committed.
    expect(strategy.vmOf({ artifact: 'fixture-http', version: '1.0.0' })?.exit).toBeNull();
    expect(await published(port)).toBe('hello 1.0.0\n');
    expect(await strategy.healthCheck(manifestOf(v2), signal)).toEqual({ healthy: true });
    expect(await published(port)).toBe('hello 1.0.0\n');
    const old = strategy.vmOf({ artifact: 'fixture-http', version: '1.0.0' });
    await strategy.commit(manifestOf(v2));
    expect(await published(port)).toBe('hello 2.0.0\n');
    expect(old?.exit?.description).toBe('the guest powered off');
    expect(consoles.calls).toContain('unwatch fixture-http 1.0.0');
  }, 300_000);

  it('reports a crashing version unhealthy with its console tail and rolls back while the old one keeps serving', async () => {
    await strategy.install(v3.tarFile, manifestOf(v3));
    const result = await strategy.healthCheck(manifestOf(v3), signal);
    expect(result.healthy).toBe(false);
    const reason = (result as { reason: string }).reason;
    expect(reason).toMatch(
      /^fixture-http 3\.0\.0 exited before it was ready: the guest rebooted .*; last console lines:\n/,
    );
    expect(reason).toContain('fixture-http 3.0.0 is crashing on purpose');
    expect(reason).toMatch(/Kernel panic - not syncing: Attempted to kill init/);
    expect(reason.length).toBeLessThanOrEqual(2048);
    expect(consoles.calls).toContain('flush fixture-http 3.0.0');
    expect(readFileSync(join(root, 'fixture-http', '3.0.0.console.log'), 'utf8')).toContain(
      'crashing on purpose',
    );
    expect(await published(port)).toBe('hello 2.0.0\n');
    await strategy.rollback({ artifact: 'fixture-http', version: '2.0.0' });
    expect(strategy.activeVersion).toEqual({ artifact: 'fixture-http', version: '2.0.0' });
    expect(await published(port)).toBe('hello 2.0.0\n');
  }, 300_000);

  it('stops its VMs and proxies, and a new agent start runs the committed version again', async () => {
    const running = strategy.vmOf({ artifact: 'fixture-http', version: '2.0.0' });
    await strategy.stop();
    expect(running?.exit?.description).toBe('the guest powered off');
    expect(await published(port)).toMatch(/^unreachable/);
    strategy = newStrategy();
    await strategy.resume();
    const resumed = strategy.vmOf({ artifact: 'fixture-http', version: '2.0.0' });
    await resumed?.waitForReady({ http: { port: 8080, path: '/' } }, 180_000);
    expect(await published(port)).toBe('hello 2.0.0\n');
  }, 300_000);

  it('stops the VM an agent killed with -9 left behind before it starts the committed version again', async () => {
    const orphan = strategy.vmOf({ artifact: 'fixture-http', version: '2.0.0' });
    expect(orphan?.exit).toBeNull();
    // The old strategy is dropped without stop(), as a killed agent would; its proxy keeps its port.
    const otherPort = await freePort();
    strategy = new VmStrategy({
      root,
      publish: [{ hostPort: otherPort, guestPort: 8080, address: '127.0.0.1' }],
      accelerator: 'tcg',
      readyTimeoutSeconds: 180,
      env: {},
      consoles,
      log: () => {},
    });
    await strategy.resume();
    expect(orphan?.exit?.description).toMatch(/signal|SIGTERM/);
    const resumed = strategy.vmOf({ artifact: 'fixture-http', version: '2.0.0' });
    expect(resumed?.pid).not.toBe(orphan?.pid);
    await resumed?.waitForReady({ http: { port: 8080, path: '/' } }, 180_000);
    expect(await published(otherPort)).toBe('hello 2.0.0\n');
  }, 300_000);
});

describe('failure reason', () => {
  it('keeps the newest console lines within the protocol limit', () => {
    const tail = Array.from({ length: 500 }, (_, index) => `line ${index} ${'x'.repeat(40)}`);
    const reason = failureReason('svc 1.0.0 exited before it was ready: the guest rebooted', tail);
    expect(reason.length).toBeLessThanOrEqual(2048);
    expect(
      reason.startsWith('svc 1.0.0 exited before it was ready: the guest rebooted; last console lines:\n'),
    ).toBe(true);
    expect(reason.endsWith(`line 499 ${'x'.repeat(40)}`)).toBe(true);
    expect(reason).not.toContain('line 0 ');
  });

  it("keeps the application's last words before a kernel panic rather than the stack dump after it", () => {
    const tail = [
      'boot noise',
      'svc 1.0.0: cannot open /data, giving up',
      '[    3.38] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100',
      ...Array.from({ length: 80 }, (_, index) => `[    3.39] stack frame ${index} ${'y'.repeat(30)}`),
    ];
    const reason = failureReason('svc 1.0.0 exited before it was ready: the guest rebooted', tail);
    expect(reason).toContain('svc 1.0.0: cannot open /data, giving up');
    expect(reason).toContain('Kernel panic - not syncing: Attempted to kill init!');
    expect(reason).not.toContain('stack frame');
    expect(reason.endsWith("(the kernel's stack dump is left out here)")).toBe(true);
  });

  it('says when the console was empty', () => {
    expect(failureReason('svc 1.0.0 not ready after 5 s: HTTP', [])).toBe(
      'svc 1.0.0 not ready after 5 s: HTTP; the console printed nothing',
    );
  });
});
