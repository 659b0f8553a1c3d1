import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { BoardfleetError, type ErrorCode } from '../../protocol/errors.ts';
import {
  BUNDLE_FILES,
  launchCmdline,
  type LaunchSpec,
  launchSpecSchema,
  QEMU_MACHINES,
  type Readiness,
} from '../../protocol/unikernel-image.ts';
import { type AcceleratorChoice, qemuBinary } from './accelerator.ts';
import { ConsoleCapture } from './console-capture.ts';
import { QmpClient, type QmpEvent } from './qmp-client.ts';

export {
  type AcceleratorChoice,
  type AcceleratorPreference,
  detectAccelerator,
  qemuBinary,
} from './accelerator.ts';

/** A host port forwarded to a guest port; host 0 takes a free one (see {@link QemuVm.hostPort}). */
export interface PortForward {
  guest: number;
  host: number;
  protocol: 'tcp' | 'udp';
}

export interface QemuVmOptions {
  /** A bundle folder: launch.json, kernel, initramfs.img. */
  bundleDir: string;
  accelerator: AcceleratorChoice;
  /** Launch-time environment for the application, on the kernel command line. */
  env?: Record<string, string>;
  /** Default: every port of the spec, on a free host port. */
  forwards?: PortForward[];
  /** Host address the forwards listen on (default 127.0.0.1). */
  forwardAddress?: string;
  memoryMiB?: number;
  /** The console file (capped, keeps its tail); none by default. */
  consoleFile?: string;
  consoleFileCapBytes?: number;
  /** Every console line as it arrives. */
  onConsoleLine?: (line: string) => void;
  searchPath?: string;
}

/** How a VM ended. */
export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** In words: "the guest powered off", "the guest rebooted (a kernel panic does with panic=-1)"… */
  description: string;
}

/** The VM exited, or never got ready: carries how it ended and what it printed last. */
export class VmNotReadyError extends BoardfleetError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly exit: VmExit | null,
    readonly consoleTail: string[],
  ) {
    super(code, message);
  }
}

const QMP_CONNECT_TIMEOUT_MS = 30_000;
const TERM_GRACE_MS = 5_000;
const READY_POLL_MS = 500;

/** Reads and checks a bundle's launch.json. */
export function readLaunchSpec(bundleDir: string): LaunchSpec {
  const path = join(bundleDir, BUNDLE_FILES.launchSpec);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new BoardfleetError('bad-bundle', `cannot read ${path}: ${(error as Error).message}`);
  }
  const parsed = launchSpecSchema.safeParse(json);
  if (!parsed.success) {
    throw new BoardfleetError(
      'bad-bundle',
      `${path}: ${parsed.error.issues.map((issue) => `${issue.path.join('.') || '(top)'}: ${issue.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}

/** qemu's arguments for one launch of a bundle. */
export function qemuArguments(options: {
  spec: LaunchSpec;
  bundleDir: string;
  accel: 'kvm' | 'tcg';
  env: Record<string, string>;
  forwards: PortForward[];
  forwardAddress: string;
  memoryMiB: number;
  qmpSocket: string;
}): string[] {
  const { spec } = options;
  const machine = QEMU_MACHINES[spec.architecture];
  const args = [
    ...[
      '-M',
      machine.machine,
      '-accel',
      options.accel,
      '-cpu',
      options.accel === 'kvm' ? 'host' : machine.tcgCpu,
    ],
    ...['-m', String(options.memoryMiB), '-smp', String(spec.cpus)],
    ...['-kernel', join(options.bundleDir, BUNDLE_FILES.kernel)],
    ...['-initrd', join(options.bundleDir, BUNDLE_FILES.initramfs)],
    ...['-append', launchCmdline(spec, options.env)],
    ...['-nodefaults', '-no-reboot', '-display', 'none', '-serial', 'stdio'],
    ...['-qmp', `unix:${options.qmpSocket},server=on,wait=off`],
  ];
  if (spec.network.mode !== 'none') {
    // qemu's user network hands out 10.0.2.15 by DHCP; a static guest is reached at its own address.
    const guestAddress = spec.network.mode === 'static' ? spec.network.address.split('/')[0] : '';
    const forwards = options.forwards.map(
      (forward) =>
        `,hostfwd=${forward.protocol}:${options.forwardAddress}:${forward.host}-${guestAddress}:${forward.guest}`,
    );
    args.push('-netdev', `user,id=net0${forwards.join('')}`, '-device', 'virtio-net-pci,netdev=net0');
  }
  args.push('-device', 'virtio-rng-pci');
  // q35 has a PS/2 keyboard for ctrl-alt-del; virt has none, so it gets a virtio one (the guest
  // needs the virtio_input driver for the key to arrive).
  if (spec.architecture === 'arm64') args.push('-device', 'virtio-keyboard-pci');
  return args;
}

/** Every qemu this process started, killed when the process exits so no VM outlives its owner. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const running of liveChildren) running.kill('SIGKILL');
    });
  }
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

/**
 * One run of a unikernel bundle under qemu: the console is captured (lines, a ring, a capped
 * file), qemu's QMP socket is used to find the forwarded ports and to press ctrl-alt-del.
 * qemu runs in its own process group, so a Ctrl-C at the terminal reaches only its owner, which
 * then stops it cleanly.
 */
export class QemuVm {
  readonly spec: LaunchSpec;
  readonly console: ConsoleCapture;
  private child: ChildProcess | null = null;
  private qmp: QmpClient | null = null;
  private scratch = '';
  private shutdownReason: string | null = null;
  private stderr = '';
  private exitInfo: VmExit | null = null;
  private exitPromise: Promise<VmExit> | null = null;
  private readonly hostPorts = new Map<string, number>();

  constructor(private readonly options: QemuVmOptions) {
    this.spec = readLaunchSpec(options.bundleDir);
    this.console = new ConsoleCapture({
      ...(options.consoleFile ? { file: options.consoleFile } : {}),
      ...(options.consoleFileCapBytes ? { fileCapBytes: options.consoleFileCapBytes } : {}),
    });
    if (options.onConsoleLine) this.console.onLine(options.onConsoleLine);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** How the VM ended, or null while it runs. */
  get exit(): VmExit | null {
    return this.exitInfo;
  }

  /** Settles when qemu has exited. */
  get exited(): Promise<VmExit> {
    if (!this.exitPromise) throw new Error('the VM was not started');
    return this.exitPromise;
  }

  /** Starts qemu; resolves once its QMP socket answers and the forwarded ports are known. */
  async start(): Promise<void> {
    if (this.child) throw new Error('the VM was started already');
    const binary = qemuBinary(this.spec.architecture, this.options.searchPath);
    // A short path: unix socket paths are limited to 107 bytes.
    this.scratch = mkdtempSync(join(tmpdir(), 'bf-vm-'));
    const qmpSocket = join(this.scratch, 'qmp.sock');
    const forwards =
      this.spec.network.mode === 'none'
        ? []
        : this.options.forwards
          ? [...this.options.forwards]
          : this.spec.ports.map((port) => ({ guest: port.guest, host: 0, protocol: port.protocol }));
    // The readiness check reaches the guest through a forwarded port too.
    const readinessPort = this.spec.network.mode === 'none' ? undefined : this.spec.readiness?.http?.port;
    if (
      readinessPort &&
      !forwards.some((forward) => forward.guest === readinessPort && forward.protocol === 'tcp')
    ) {
      forwards.push({ guest: readinessPort, host: 0, protocol: 'tcp' });
    }
    const args = qemuArguments({
      spec: this.spec,
      bundleDir: this.options.bundleDir,
      accel: this.options.accelerator.accel,
      env: this.options.env ?? {},
      forwards,
      forwardAddress: this.options.forwardAddress ?? '127.0.0.1',
      memoryMiB: this.options.memoryMiB ?? this.spec.memoryMiB,
      qmpSocket,
    });
    this.console.note(
      `=== ${this.spec.name} ${this.spec.version} started ${new Date().toISOString()} under ${this.options.accelerator.accel} ===`,
    );
    const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    this.child = child;
    track(child);
    child.stdout?.on('data', (chunk: Buffer) => this.console.write(chunk));
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-4096);
    });
    this.exitPromise = new Promise<VmExit>((resolve) => {
      child.once('error', (error) => {
        this.exitInfo = { code: null, signal: null, description: `qemu did not start: ${error.message}` };
        resolve(this.exitInfo);
      });
      child.once('close', (code, signal) => {
        this.console.end();
        this.qmp?.close();
        rmSync(this.scratch, { recursive: true, force: true });
        this.exitInfo ??= { code, signal, description: this.describeExit(code, signal) };
        resolve(this.exitInfo);
      });
    });
    this.qmp = await this.connectQmp(qmpSocket);
    if (forwards.length > 0) await this.readForwardedPorts(forwards);
  }

  /** The host port forwarded to `guestPort` (the one qemu picked when asked for port 0). */
  hostPort(guestPort: number, protocol: 'tcp' | 'udp' = 'tcp'): number {
    const port = this.hostPorts.get(`${protocol}:${guestPort}`);
    if (port === undefined) throw new Error(`guest ${protocol} port ${guestPort} is not forwarded`);
    return port;
  }

  /**
   * Resolves when the application is ready by `readiness` (HTTP through the forwarded port, a
   * console line, or both); rejects with {@link VmNotReadyError} as soon as the VM exits, or at
   * the timeout, with the console's last lines.
   */
  async waitForReady(readiness: Readiness, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const pattern = readiness.consoleLine ? new RegExp(readiness.consoleLine) : null;
    let lineSeen = pattern === null || this.console.tail().some((line) => pattern.test(line));
    const unsubscribe = this.console.onLine((line) => {
      if (pattern?.test(line)) lineSeen = true;
    });
    const url = readiness.http
      ? `http://127.0.0.1:${this.hostPort(readiness.http.port)}${readiness.http.path}`
      : null;
    let httpOk = url === null;
    let httpProblem = 'no answer yet';
    try {
      for (;;) {
        if (this.exitInfo) {
          throw this.notReady('vm-exited', `exited before it was ready: ${this.exitInfo.description}`);
        }
        if (!httpOk && url) {
          try {
            const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
            await response.arrayBuffer();
            if (response.ok) httpOk = true;
            else httpProblem = `GET ${readiness.http?.path} answered ${response.status}`;
          } catch (error) {
            httpProblem = `GET ${readiness.http?.path}: ${((error as Error).cause as Error | undefined)?.message ?? (error as Error).message}`;
          }
        }
        if (httpOk && lineSeen) return;
        if (signal?.aborted) throw this.notReady('vm-not-ready', 'readiness check cancelled');
        if (Date.now() >= deadline) {
          const missing = [
            ...(httpOk ? [] : [`HTTP on guest port ${readiness.http?.port}: ${httpProblem}`]),
            ...(lineSeen ? [] : [`no console line matched /${readiness.consoleLine}/`]),
          ];
          throw this.notReady(
            'vm-not-ready',
            `not ready after ${Math.round(timeoutMs / 1000)} s: ${missing.join('; ')}`,
          );
        }
        await Promise.race([delay(READY_POLL_MS), this.exited]);
      }
    } finally {
      unsubscribe();
    }
  }

  /**
   * Stops the VM: with spec.stop `ctrl-alt-del` the guest is asked (the application syncs and
   * powers off) and given `graceMs`; then SIGTERM, then SIGKILL. Resolves with how it ended.
   */
  async stop(options: { graceMs?: number } = {}): Promise<VmExit> {
    const child = this.child;
    if (!child) throw new Error('the VM was not started');
    if (this.exitInfo) return this.exitInfo;
    if (this.spec.stop === 'ctrl-alt-del' && this.qmp) {
      try {
        await this.qmp.execute('send-key', {
          keys: ['ctrl', 'alt', 'delete'].map((key) => ({ type: 'qcode', data: key })),
        });
        if (await this.exitsWithin(options.graceMs ?? 30_000)) return this.exited;
      } catch {
        // QMP is gone (qemu is exiting, or stuck): the signals below end it either way.
      }
    }
    child.kill('SIGTERM');
    if (!(await this.exitsWithin(TERM_GRACE_MS))) child.kill('SIGKILL');
    return this.exited;
  }

  /** Ends qemu at once (a second Ctrl-C). */
  kill(): void {
    this.child?.kill('SIGKILL');
  }

  private async exitsWithin(ms: number): Promise<boolean> {
    const timer = delay(ms, false);
    return Promise.race([this.exited.then(() => true), timer]);
  }

  private notReady(code: ErrorCode, what: string): VmNotReadyError {
    return new VmNotReadyError(
      code,
      `${this.spec.name} ${this.spec.version} ${what}`,
      this.exitInfo,
      this.console.tail(),
    );
  }

  private async connectQmp(path: string): Promise<QmpClient> {
    const deadline = Date.now() + QMP_CONNECT_TIMEOUT_MS;
    for (;;) {
      if (this.exitInfo) throw this.startFailure();
      try {
        return await QmpClient.connect(path, (event) => this.onQmpEvent(event));
      } catch (error) {
        if (Date.now() > deadline) {
          this.kill();
          throw new BoardfleetError(
            'vm-start-failed',
            `qemu did not open its QMP socket: ${(error as Error).message}`,
          );
        }
        await Promise.race([delay(50), this.exited]);
      }
    }
  }

  private startFailure(): BoardfleetError {
    const exit = this.exitInfo as VmExit;
    const said = this.stderr.trim().split('\n').slice(-3).join(' / ');
    return new BoardfleetError(
      'vm-start-failed',
      `qemu could not start ${this.spec.name} ${this.spec.version}: ${exit.description}${said ? `: ${said}` : ''}`,
    );
  }

  private onQmpEvent(event: QmpEvent): void {
    if (event.event === 'SHUTDOWN' && typeof event.data?.reason === 'string')
      this.shutdownReason = event.data.reason;
  }

  private async readForwardedPorts(forwards: PortForward[]): Promise<void> {
    const table = await (this.qmp as QmpClient).humanMonitor('info usernet');
    // "  TCP[HOST_FORWARD]   8       127.0.0.1 42567       10.0.2.15  8080     0     0"
    for (const match of table.matchAll(/(TCP|UDP)\[HOST_FORWARD\]\s+\S+\s+\S+\s+(\d+)\s+\S+\s+(\d+)/g)) {
      this.hostPorts.set(`${(match[1] as string).toLowerCase()}:${match[3]}`, Number(match[2]));
    }
    const missing = forwards.filter((forward) => !this.hostPorts.has(`${forward.protocol}:${forward.guest}`));
    if (missing.length > 0) {
      this.kill();
      await this.exited;
      throw new BoardfleetError(
        'vm-start-failed',
        `qemu did not forward guest ports ${missing.map((forward) => forward.guest).join(', ')}: ${table.trim()}`,
      );
    }
  }

  private describeExit(code: number | null, signal: NodeJS.Signals | null): string {
    if (signal) return `qemu was killed by ${signal}`;
    switch (this.shutdownReason) {
      case 'guest-shutdown':
        return 'the guest powered off';
      case 'guest-reset':
        return 'the guest rebooted (the kernel reboots on a panic, e.g. when the application as PID 1 exits)';
      case 'guest-panic':
        return 'the guest kernel panicked';
      case 'host-signal':
        return 'qemu was stopped by a signal';
      default: {
        const said = this.stderr.trim().split('\n').pop();
        return `qemu exited with status ${code}${said ? ` (${said})` : ''}`;
      }
    }
  }
}
