/**
 * Starting a remote shell's process on the device. A pseudo-terminal comes from util-linux's (or
 * busybox's) `script`, which needs no native module: `script -qfc CMD /dev/null` runs CMD on a new
 * pty and relays it to its own stdin and stdout. Without `script` the shell runs on pipes (`sh -i`:
 * no line editing, no full-screen programs), and says so in `opened`.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { locateHostTool } from '../../lib/host-tools.ts';
import type { ShellMode } from '../../protocol/device-shell.ts';

export interface ShellRequest {
  cols: number;
  rows: number;
  /** One command to run without a terminal (`sh -c`); absent: an interactive login shell. */
  command?: string;
}

export interface ShellProcess {
  child: ChildProcess;
  mode: ShellMode;
  /** Tells the terminal its new size; best effort (a pty only), never throws. */
  resize(cols: number, rows: number): void;
}

/** Where the agent looks for `script`, the shell and `stty`: its own PATH. */
export interface ShellHost {
  searchPath: string;
  /** The interactive shell: $SHELL when executable, else /bin/sh. */
  shell: string;
}

export function shellHost(env: NodeJS.ProcessEnv = process.env): ShellHost {
  const searchPath = env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin';
  const preferred = env.SHELL && existsSync(env.SHELL) ? env.SHELL : null;
  return { searchPath, shell: preferred ?? locateHostTool('sh', searchPath) ?? '/bin/sh' };
}

/**
 * A clean environment, as sshd gives one: the agent's own variables (its settings, its secrets'
 * paths) stay out of the operator's shell.
 */
function sessionEnvironment(host: ShellHost, request: ShellRequest): NodeJS.ProcessEnv {
  const home = process.env.HOME ?? homedir();
  return {
    PATH: host.searchPath,
    HOME: home,
    SHELL: host.shell,
    TERM: 'xterm-256color',
    COLUMNS: String(request.cols),
    LINES: String(request.rows),
    ...(process.env.USER ? { USER: process.env.USER, LOGNAME: process.env.USER } : {}),
    ...(process.env.LANG ? { LANG: process.env.LANG } : {}),
  };
}

const quote = (text: string) => `'${text.replaceAll("'", "'\\''")}'`;

/** util-linux's `script` returns the shell's exit code with -e; busybox's has no -e and returns its own. */
let scriptReturnsExitCode: boolean | null = null;
function scriptFlags(script: string): string {
  if (scriptReturnsExitCode === null) {
    try {
      const version = execFileSync(script, ['--version'], { encoding: 'utf8', timeout: 5000, stdio: 'pipe' });
      scriptReturnsExitCode = version.includes('util-linux');
    } catch {
      scriptReturnsExitCode = false;
    }
  }
  return scriptReturnsExitCode ? '-qefc' : '-qfc';
}

export function startShellProcess(host: ShellHost, request: ShellRequest): ShellProcess {
  const env = sessionEnvironment(host, request);
  const cwd = env.HOME && existsSync(env.HOME) ? env.HOME : '/';
  // detached: the shell leads its own process group, so ending the session ends what it started.
  const options = { cwd, env, detached: true, stdio: 'pipe' as const };
  if (request.command !== undefined) {
    const child = spawn('/bin/sh', ['-c', request.command], {
      ...options,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { child, mode: 'pipes', resize: () => undefined };
  }
  const script = locateHostTool('script', host.searchPath);
  if (!script) {
    const child = spawn(host.shell, ['-i'], options);
    return { child, mode: 'pipes', resize: () => undefined };
  }
  // `stty` sizes the new pty before the shell starts, since `script` copies the size of its own
  // stdin, which is a pipe here.
  const inner = `stty cols ${request.cols} rows ${request.rows} 2>/dev/null; exec ${quote(host.shell)} -l`;
  const child = spawn(script, [scriptFlags(script), inner, '/dev/null'], options);
  return { child, mode: 'pty', resize: (cols, rows) => resizePty(child, host, cols, rows) };
}

/**
 * `stty -F` on the shell's pty sets its window size, and the kernel signals SIGWINCH to the
 * program in the foreground. The pty is found through /proc: the shell is `script`'s child, its
 * stdin the pty's other end. Elsewhere (no /proc, no stty) the size stays as opened.
 */
function resizePty(child: ChildProcess, host: ShellHost, cols: number, rows: number, attempt = 0): void {
  const stty = locateHostTool('stty', host.searchPath);
  if (!stty || child.pid === undefined || child.exitCode !== null) return;
  let terminal: string | null = null;
  try {
    const shellPid = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)[0];
    // Until the wrapper has run its own `stty` and become the shell, a size set now would be undone.
    const started = shellPid && !readFileSync(`/proc/${shellPid}/cmdline`, 'utf8').includes('stty cols');
    if (started) terminal = readlinkSync(`/proc/${shellPid}/fd/0`);
  } catch {
    // Not started yet, gone, or /proc is not Linux's.
  }
  if (terminal?.startsWith('/dev/pts/'))
    execFile(
      stty,
      ['-F', terminal, 'cols', String(cols), 'rows', String(rows)],
      { timeout: 5000 },
      () => undefined,
    );
  // A resize right after the open may come before `script` started the shell: try again shortly.
  else if (attempt < RESIZE_ATTEMPTS)
    setTimeout(() => resizePty(child, host, cols, rows, attempt + 1), RESIZE_RETRY_MS).unref();
}

const RESIZE_ATTEMPTS = 20;
const RESIZE_RETRY_MS = 100;

/**
 * Ends the shell and everything it started (its process group): SIGTERM, on which `script` ends
 * its shell (it ignores the SIGHUP a closed terminal would send), then SIGKILL.
 */
export function endShellProcess(child: ChildProcess, graceMs = 2000): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-(child.pid as number), signal);
    } catch {
      child.kill(signal);
    }
  };
  signalGroup('SIGTERM');
  const kill = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) signalGroup('SIGKILL');
  }, graceMs);
  kill.unref();
  child.once('exit', () => clearTimeout(kill));
}

/**
 * Kills the process groups of shells a previous agent left running: killed with SIGKILL, it could
 * not end them, and `script` does not end when its stdin closes. Only groups still led by `script`
 * or a shell are killed, so a recycled pid is left alone.
 */
export function reapLeftoverShells(groups: readonly number[]): number {
  let reaped = 0;
  for (const group of groups) {
    let command: string;
    try {
      command = readFileSync(`/proc/${group}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!/(^|\/)(script|[a-z]*sh)\0/.test(command)) continue;
    try {
      process.kill(-group, 'SIGKILL');
      reaped++;
    } catch {
      // Gone meanwhile.
    }
  }
  return reaped;
}
