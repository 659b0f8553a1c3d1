import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { UpdateRecord } from '../../device-agent/update/update-state-machine.ts';
import { CLI, secretFile } from './agent-process.ts';
import { eventually } from './test-server.ts';

/**
 * A real `boardfleet agent` process that can be killed with everything it started. It runs in its
 * own process group, so `kill()` SIGKILLs the agent and its supervised app together, as systemd
 * does with a service's cgroup; a bare kill -9 of the agent would leave the app running.
 */
export class AgentUnderTest {
  readonly dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-e2e-agent-'));
  private child: ChildProcess | null = null;
  private log = '';

  constructor(
    readonly name: string,
    private readonly args: string[],
  ) {}

  /** Starts (or starts again, on the same data dir) with extra environment variables. */
  start(env: Record<string, string> = {}): this {
    if (this.running) throw new Error(`agent ${this.name} is already running`);
    const child = spawn(
      process.execPath,
      [CLI, 'agent', '--name', this.name, '--data-dir', this.dataDir, ...this.args],
      {
        env: { ...process.env, LOG_LEVEL: 'info', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      },
    );
    const collect = (data: Buffer) => {
      this.log += data.toString();
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.child = child;
    return this;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number {
    if (!this.child?.pid) throw new Error(`agent ${this.name} was never started`);
    return this.child.pid;
  }

  /** Everything the agent (and its app, through the agent's logger) printed, over all its runs. */
  output(): string {
    return this.log;
  }

  /** kill -9 of the agent's whole process group; waits until the agent has gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = once(child, 'exit');
    process.kill(-this.pid, 'SIGKILL');
    await exited;
    // The group's other members (the app) die with the same signal; wait until /proc agrees.
    await eventually(
      `agent ${this.name}'s processes gone`,
      () => this.groupMembers(child.pid as number).length === 0,
    );
  }

  /** Kills the agent and its app, and removes its data dir. */
  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A clean stop (SIGTERM): the agent says goodbye and stops its app. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }

  /** Waits for the test hook's line saying the agent froze at `state`. */
  async pausedAt(state: string, timeoutMs = 30_000): Promise<void> {
    await eventually(
      `agent ${this.name} paused at ${state}`,
      () => {
        if (!this.running) throw new Error(`agent ${this.name} exited:\n${this.log}`);
        return this.log.includes(`test hook: paused at update state ${state}\n`);
      },
      timeoutMs,
    );
  }

  get deviceId(): string {
    return (JSON.parse(readFileSync(join(this.dataDir, 'credentials.json'), 'utf8')) as { deviceId: string })
      .deviceId;
  }

  /** The update state machine's record on disk (`update-state.json`), or null before the first update. */
  updateRecord(): UpdateRecord | null {
    const path = join(this.dataDir, 'update-state.json');
    return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as UpdateRecord) : null;
  }

  /** Installed release directories (`app/releases/NAME-VERSION`). */
  releases(): string[] {
    const dir = join(this.dataDir, 'app', 'releases');
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  }

  /**
   * The release directories the agent's running app processes run from (their working
   * directory, as the kernel sees it): what actually runs, not what the agent believes.
   */
  runningApps(): string[] {
    if (!this.running) return [];
    return this.groupMembers(this.pid)
      .filter((pid) => pid !== this.pid)
      .map((pid) => {
        try {
          if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep\0')) return null;
          return basename(readlinkSync(`/proc/${pid}/cwd`));
        } catch {
          return null; // gone meanwhile
        }
      })
      .filter((dir): dir is string => dir !== null)
      .sort();
  }

  private groupMembers(group: number): number[] {
    const members: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        // pid (comm) state ppid pgrp …: comm may hold spaces and parentheses, so read after the last ')'.
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (Number(fields[2]) === group && fields[0] !== 'Z') members.push(Number(entry));
      } catch {
        // the process ended while we looked
      }
    }
    return members;
  }
}

/** Where the fleet helpers below send their devices: the server's URL and an admin token. */
export interface FleetServer {
  httpUrl: string;
  adminToken: string;
}

/** `count` real agents named `{tag}-1…`, provisioned with `provisioningToken`, tagged `tag`, heartbeat 1 s. */
export function startTaggedAgents(
  server: FleetServer,
  provisioningToken: string,
  { tag, board, count }: { tag: string; board: string; count: number },
): AgentUnderTest[] {
  return Array.from({ length: count }, (_, index) =>
    new AgentUnderTest(`${tag}-${index + 1}`, [
      ...['--server', server.httpUrl, '--provisioning-token-file', secretFile(provisioningToken)],
      ...['--board', board, '--tag', tag, '--heartbeat', '1', '--keepalive', '5'],
    ]).start(),
  );
}

/** A `boardfleet simulate` process for `count` devices named and tagged `tag`, heartbeat 1 s. */
export function startSimulator(
  server: FleetServer,
  { tag, board, count, dataDir }: { tag: string; board: string; count: number; dataDir: string },
): { process: ChildProcess; output(): string } {
  let output = '';
  const child = spawn(
    process.execPath,
    [
      CLI,
      'simulate',
      ...['--devices', String(count), '--prefix', tag, '--tag', tag, '--board', board],
      ...['--heartbeat', '1', '--data-dir', dataDir],
    ],
    {
      env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.on('error', (error) => (output += `spawn failed: ${error.message}\n`));
  child.stdout?.on('data', (data: Buffer) => (output += data.toString()));
  child.stderr?.on('data', (data: Buffer) => (output += data.toString()));
  return { process: child, output: () => output };
}
