import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../cli/boardfleet.js', import.meta.url));

/**
 * A file only its owner can read holding `secret`, for `--secret-file` and
 * `--provisioning-token-file`: the agent takes no secret on its command line.
 */
export function secretFile(secret: string): string {
  if (!secretsDir) {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-secrets-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    secretsDir = dir;
  }
  const path = join(secretsDir, `secret-${++secretFiles}`);
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return path;
}
let secretsDir: string | null = null;
let secretFiles = 0;

/** A real `boardfleet agent` process. */
export function startAgentProcess(
  args: string[],
  env: Record<string, string> = {},
): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [CLI, 'agent', ...args], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (data: Buffer) => {
    output += data.toString();
  });
  child.stderr?.on('data', (data: Buffer) => {
    output += data.toString();
  });
  return Object.assign(child, { output: () => output });
}

export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = once(child, 'exit');
  child.kill(signal);
  const [code] = (await exited) as [number | null];
  return code;
}
