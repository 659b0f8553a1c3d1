import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from '../../test/support/agent-process.ts';
import { uploadArtifact } from '../../test/support/artifacts.ts';
import { sqliteBackend } from '../../test/support/databases.ts';
import { startTestServer, type TestServer } from '../../test/support/test-server.ts';
import {
  buildFixtureBundle,
  type FixtureBundle,
  removeFixtureBundles,
} from '../../test/support/unikernel-fixture.ts';

interface RunImageProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
}

/** `boardfleet run-image` as a real child process without a terminal, as a script would run it. */
function runImage(args: string[], env: Record<string, string> = {}): RunImageProcess {
  const child = spawn(process.execPath, [CLI, 'run-image', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (data: Buffer) => (stdout += data.toString()));
  child.stderr?.on('data', (data: Buffer) => (stderr += data.toString()));
  return { child, stdout: () => stdout, stderr: () => stderr };
}

/** Waits for the ready line, returns the forwarded URL of guest port 8080; fails at once if run-image exits. */
async function readyUrl(run: RunImageProcess): Promise<string> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (run.child.exitCode !== null) throw new Error(`run-image exited early:\n${run.stderr()}`);
    const port = /guest tcp port 8080 → 127\.0\.0\.1:(\d+)/.exec(run.stderr())?.[1];
    if (port && /ready after/.test(run.stderr())) return `http://127.0.0.1:${port}/`;
    if (Date.now() > deadline) throw new Error(`run-image not ready after 180 s:\n${run.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function interruptAndWait(run: RunImageProcess): Promise<number | null> {
  const exited = once(run.child, 'exit');
  run.child.kill('SIGINT');
  const [code] = (await exited) as [number | null];
  return code;
}

describe('boardfleet run-image', () => {
  let bundle: FixtureBundle;
  let server: TestServer;

  beforeAll(async () => {
    bundle = await buildFixtureBundle({ version: '2.1.0' });
    server = await startTestServer(sqliteBackend);
  }, 300_000);

  afterAll(async () => {
    await server?.dispose();
    removeFixtureBundles();
  });

  it('boots a bundle tar, says which accelerator and why, streams the console and stops cleanly on Ctrl-C', async () => {
    const run = runImage([bundle.tarFile, '-p', '0:8080', '--env', 'GREETING=hi']);
    const url = await readyUrl(run);
    expect(await (await fetch(url)).text()).toBe('hello 2.1.0\n');
    expect(run.stderr()).toMatch(
      /booting fixture-http 2\.1\.0 \(x86_64\) under (KVM|TCG \(software emulation\)): \S/,
    );
    expect(await interruptAndWait(run)).toBe(0);
    expect(run.stdout()).toContain('fixture-http 2.1.0 listening on 8080');
    // The guest saw the interrupt as ctrl-alt-del and powered off by itself.
    expect(run.stdout()).toContain('fixture-http stopping');
    expect(run.stderr()).toContain('fixture-http 2.1.0: the guest powered off');
  }, 300_000);

  it('downloads an artifact from the server by name@version, verifies it against the fleet key and boots it', async () => {
    const stored = await uploadArtifact(server, readFileSync(bundle.tarFile), {
      name: 'fixture-http-vm-x86_64',
      version: '2.1.0',
      boards: ['vm-x86_64', 'generic-x64'],
      kind: 'unikernel',
    });
    const run = runImage(['fixture-http-vm-x86_64@2.1.0', '--accel', 'tcg'], {
      BOARDFLEET_URL: server.httpUrl,
      BOARDFLEET_TOKEN: server.adminToken,
    });
    const url = await readyUrl(run);
    expect(await (await fetch(url)).text()).toBe('hello 2.1.0\n');
    expect(run.stderr()).toContain(
      `fixture-http-vm-x86_64 2.1.0 (${stored.id}): signature and sha256 verified`,
    );
    expect(run.stderr()).toContain('under TCG (software emulation) as configured');
    expect(await interruptAndWait(run)).toBe(0);
  }, 300_000);

  it('refuses what is neither a bundle on disk nor a unikernel artifact on the server', async () => {
    const run = runImage(['no-such-image@9.9.9'], {
      BOARDFLEET_URL: server.httpUrl,
      BOARDFLEET_TOKEN: server.adminToken,
    });
    const [code] = (await once(run.child, 'exit')) as [number | null];
    expect(code).toBe(1);
    expect(run.stderr()).toMatch(
      /no file or folder no-such-image@9\.9\.9, and no unikernel artifact no-such-image version 9\.9\.9/,
    );
  }, 60_000);
});
