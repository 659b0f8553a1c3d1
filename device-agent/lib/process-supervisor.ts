import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';

const MAX_BACKOFF_MS = 30_000;
const STOP_GRACE_MS = 5_000;
const MAX_PARTIAL_LINE = 16 * 1024;

/**
 * Keeps one application process running: restarts it when it exits, waiting 1 s, 2 s, 4 s… up to
 * 30 s between attempts so a crashing app does not spin. `restarts` lets a health check notice a
 * crash loop.
 */
export class ProcessSupervisor {
  private child: ChildProcess | null = null;
  private stopped = true;
  private backoffMs = 1_000;
  private restartTimer: NodeJS.Timeout | null = null;
  restarts = 0;
  lastExit: { code: number | null; signal: NodeJS.Signals | null } | null = null;

  constructor(
    private readonly command: string[],
    private readonly options: {
      cwd: string;
      env: Record<string, string>;
      onOutput?: (line: string, stream: 'stdout' | 'stderr') => void;
    },
  ) {}

  start(): void {
    this.stopped = false;
    this.spawnChild();
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  private spawnChild(): void {
    const [file, ...args] = this.command as [string, ...string[]];
    const startedAt = Date.now();
    const child = spawn(file, args, {
      cwd: this.options.cwd,
      env: { ...process.env, ...this.options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    // A chunk may end mid-line: the rest waits for the next chunk (or the end of the stream).
    const forward = (stream: 'stdout' | 'stderr') => {
      let partial = '';
      return (data: Buffer | null) => {
        const lines = (partial + (data?.toString() ?? '\n')).split('\n');
        partial = lines.pop() ?? '';
        // Output that never ends a line is passed on in pieces rather than held without end.
        if (partial.length > MAX_PARTIAL_LINE) {
          lines.push(partial);
          partial = '';
        }
        for (const line of lines.filter(Boolean)) this.options.onOutput?.(line, stream);
      };
    };
    const stdout = forward('stdout');
    const stderr = forward('stderr');
    child.stdout?.on('data', stdout).on('end', () => stdout(null));
    child.stderr?.on('data', stderr).on('end', () => stderr(null));
    child.on('error', (error) => this.options.onOutput?.(`cannot start ${file}: ${error.message}`, 'stderr'));
    child.on('close', (code, signal) => {
      this.lastExit = { code, signal };
      if (this.stopped) return;
      // A process that ran for a while earns a fresh backoff.
      if (Date.now() - startedAt > MAX_BACKOFF_MS) this.backoffMs = 1_000;
      this.restarts++;
      this.restartTimer = setTimeout(() => this.spawnChild(), this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const closed = once(child, 'close');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await closed;
    clearTimeout(timer);
  }
}
