import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import { BUNDLE_FILES, type LaunchSpec } from '../../protocol/unikernel-image.ts';
import { writeFileAtomically } from '../../lib/atomic-file.ts';
import type { ConsoleUploader } from '../vm/console-uploader.ts';
import { type AcceleratorPreference, detectAccelerator, QemuVm, VmNotReadyError } from '../vm/qemu-vm.ts';
import { checkBundleDir, extractBundle } from '../vm/vm-bundle.ts';
import { InstallRefusedError, type UpdateStrategy } from './update-strategy.ts';

/** A host port that always reaches the active VM's guest port (repointed on commit). */
export interface PublishedPort {
  hostPort: number;
  guestPort: number;
  /** Default 0.0.0.0: published ports are the device's services. */
  address?: string;
}

export interface VmStrategyOptions {
  /** `<data dir>/vm`: bundles in `<name>/<version>/`, consoles beside them, `committed.json`. */
  root: string;
  publish: PublishedPort[];
  accelerator: AcceleratorPreference;
  readyTimeoutSeconds: number;
  /** Launch-time environment of every VM. */
  env: Record<string, string>;
  consoles?: Pick<ConsoleUploader, 'watch' | 'flush' | 'unwatch' | 'stop'>;
  log: (line: string) => void;
  /** Every console line of every VM, as it arrives (the live log). */
  consoleLine?: (artifact: string, line: string) => void;
  /** How long a VM has to power off when asked (default 30 s). */
  stopGraceMs?: number;
}

interface Version {
  artifact: string;
  version: string;
}

/** A failure reason must fit the protocol's event message (2,048 characters). */
const REASON_MAX = 2_000;
/** A VM with no readiness check counts as healthy once it has kept running this long. */
const NO_CHECK_SETTLE_MS = 10_000;
const COMMITTED_FILE = 'committed.json';

const key = (version: Version) => `${version.artifact}@${version.version}`;

/**
 * Unikernel images as supervised VMs. The new version boots beside the old one on its own
 * forwarded ports; only when it is healthy do the published ports (a small TCP proxy each)
 * switch to it, and then the old VM is stopped. A new version that exits or never gets ready
 * is stopped, and the old one never stopped serving. The committed version is remembered in
 * `committed.json` and started again when the agent starts.
 */
export class VmStrategy implements UpdateStrategy {
  readonly kind = 'vm';
  private readonly vms = new Map<string, QemuVm>();
  private active: Version | null = null;
  private readonly proxies: Server[] = [];
  private readonly stopGraceMs: number;

  constructor(private readonly options: VmStrategyOptions) {
    this.stopGraceMs = options.stopGraceMs ?? 30_000;
  }

  async install(artifactPath: string, manifest: ArtifactManifest): Promise<{ needsReboot: boolean }> {
    const version = { artifact: manifest.name, version: manifest.version };
    const label = `${manifest.name} ${manifest.version}`;
    if (manifest.kind !== 'unikernel') {
      throw new InstallRefusedError('bad-bundle', `${label} is a ${manifest.kind}, not a unikernel image`);
    }
    try {
      await extractBundle(artifactPath, this.bundleDir(version), label);
    } catch (error) {
      throw new InstallRefusedError('bad-bundle', (error as Error).message, { cause: error });
    }
    try {
      await this.startVm(version);
    } catch (error) {
      // Nothing changed yet: the old VM runs on, so the update fails rather than rolls back.
      throw new InstallRefusedError(
        'vm-start-failed',
        `${label} did not start: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    return { needsReboot: false };
  }

  async healthCheck(
    manifest: ArtifactManifest,
    signal: AbortSignal,
  ): Promise<{ healthy: true } | { healthy: false; reason: string }> {
    const version = { artifact: manifest.name, version: manifest.version };
    const label = `${manifest.name} ${manifest.version}`;
    let vm: QemuVm;
    try {
      // After an agent restart the new VM is not running yet: health-checking starts it again.
      vm = this.vms.get(key(version)) ?? (await this.startVm(version));
    } catch (error) {
      return { healthy: false, reason: `${label} did not start: ${(error as Error).message}` };
    }
    const timeoutMs = this.options.readyTimeoutSeconds * 1000;
    try {
      if (vm.spec.readiness) await vm.waitForReady(vm.spec.readiness, timeoutMs, signal);
      else await this.staysUp(vm, Math.min(NO_CHECK_SETTLE_MS, timeoutMs));
      this.options.log(`${label} is ready`);
      return { healthy: true };
    } catch (error) {
      await this.options.consoles?.flush(version.artifact, version.version);
      if (error instanceof VmNotReadyError)
        return { healthy: false, reason: failureReason(error.message, error.consoleTail) };
      if (isBoardfleetError(error)) return { healthy: false, reason: error.message };
      throw error;
    }
  }

  async commit(manifest: ArtifactManifest): Promise<void> {
    const version = { artifact: manifest.name, version: manifest.version };
    const vm = this.vms.get(key(version));
    if (!vm || vm.exit) {
      throw new BoardfleetError('vm-exited', `${manifest.name} ${manifest.version} is not running any more`);
    }
    // After an agent restart mid-update the committed VM may not run, but it is still the one replaced.
    const old = this.active ?? this.readCommitted();
    await this.publish(version);
    writeFileAtomically(join(this.options.root, COMMITTED_FILE), `${JSON.stringify(version)}\n`);
    if (old && key(old) !== key(version)) await this.stopVm(old, { forget: true });
    this.removeBundlesExcept([version, ...(old ? [old] : [])]);
  }

  async rollback(previous: Version | null): Promise<{ needsReboot: boolean }> {
    for (const running of [...this.vms.keys()]) {
      const [artifact, version] = splitKey(running);
      const isKept = previous && key(previous) === running;
      if (!isKept) await this.stopVm({ artifact, version }, { forget: false });
    }
    if (previous && existsSync(join(this.bundleDir(previous), BUNDLE_FILES.launchSpec))) {
      if (!this.vms.get(key(previous))) await this.startVm(previous);
      await this.publish(previous);
      writeFileAtomically(join(this.options.root, COMMITTED_FILE), `${JSON.stringify(previous)}\n`);
    } else {
      this.active = null;
      rmSync(join(this.options.root, COMMITTED_FILE), { force: true });
    }
    return { needsReboot: false };
  }

  async resume(): Promise<void> {
    const committed = this.readCommitted();
    if (!committed) {
      await this.listen();
      return;
    }
    if (!this.vms.get(key(committed))) await this.startVm(committed);
    await this.publish(committed);
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.vms.keys()].map((running) => {
        const [artifact, version] = splitKey(running);
        return this.stopVm({ artifact, version }, { forget: false });
      }),
    );
    await Promise.all(this.proxies.map((proxy) => new Promise((resolve) => proxy.close(resolve))));
    this.proxies.length = 0;
    await this.options.consoles?.stop();
  }

  /** The version the published ports lead to, or null. */
  get activeVersion(): Version | null {
    return this.active;
  }

  /** The running VM of a version (tests and diagnostics). */
  vmOf(version: Version): QemuVm | undefined {
    return this.vms.get(key(version));
  }

  private bundleDir(version: Version): string {
    return join(this.options.root, version.artifact, version.version);
  }

  private consoleFile(version: Version): string {
    return join(this.options.root, version.artifact, `${version.version}.console.log`);
  }

  /** The pid of a version's qemu while it runs: an agent killed with -9 leaves its VMs behind. */
  private pidFile(version: Version): string {
    return join(this.options.root, version.artifact, `${version.version}.pid`);
  }

  private readCommitted(): Version | null {
    try {
      return JSON.parse(readFileSync(join(this.options.root, COMMITTED_FILE), 'utf8')) as Version;
    } catch {
      return null;
    }
  }

  /** Starts (or keeps) the VM of a version, on free forwarded ports: its spec's and the published ones. */
  private async startVm(version: Version): Promise<QemuVm> {
    const running = this.vms.get(key(version));
    if (running && !running.exit) return running;
    const dir = this.bundleDir(version);
    const spec: LaunchSpec = checkBundleDir(dir, `${version.artifact} ${version.version}`);
    const guestPorts = new Set([
      ...spec.ports.filter((port) => port.protocol === 'tcp').map((port) => port.guest),
      ...(spec.network.mode === 'none' ? [] : this.options.publish.map((entry) => entry.guestPort)),
    ]);
    const accelerator = await detectAccelerator(spec.architecture, {
      kernel: join(dir, BUNDLE_FILES.kernel),
      preference: this.options.accelerator,
    });
    const consoleFile = this.consoleFile(version);
    const vm = new QemuVm({
      bundleDir: dir,
      accelerator,
      env: this.options.env,
      forwards: [...guestPorts].map((guest) => ({ guest, host: 0, protocol: 'tcp' as const })),
      consoleFile,
      ...(this.options.consoleLine && {
        onConsoleLine: (line: string) => this.options.consoleLine?.(version.artifact, line),
      }),
    });
    this.options.consoles?.watch(version.artifact, version.version, consoleFile);
    const pidFile = this.pidFile(version);
    await stopOrphanedVm(pidFile, dir, (line) => this.options.log(line));
    this.options.log(`starting ${version.artifact} ${version.version} under ${accelerator.reason}`);
    this.vms.set(key(version), vm);
    try {
      await vm.start();
    } catch (error) {
      this.vms.delete(key(version));
      throw error;
    }
    writeFileAtomically(pidFile, `${vm.pid}\n`);
    void vm.exited.then((exit) => {
      rmSync(pidFile, { force: true });
      this.options.log(`${version.artifact} ${version.version}: ${exit.description}`);
      void this.options.consoles?.flush(version.artifact, version.version);
    });
    return vm;
  }

  private async stopVm(version: Version, options: { forget: boolean }): Promise<void> {
    const vm = this.vms.get(key(version));
    if (!vm) return;
    this.vms.delete(key(version));
    if (!vm.exit) await vm.stop({ graceMs: this.stopGraceMs });
    if (options.forget) await this.options.consoles?.unwatch(version.artifact, version.version);
    else await this.options.consoles?.flush(version.artifact, version.version);
  }

  private async staysUp(vm: QemuVm, ms: number): Promise<void> {
    const exit = await Promise.race([
      vm.exited,
      new Promise<null>((resolve) => setTimeout(() => resolve(null), ms)),
    ]);
    if (exit) {
      throw new VmNotReadyError(
        'vm-exited',
        `${vm.spec.name} ${vm.spec.version} exited: ${exit.description}`,
        exit,
        vm.console.tail(),
      );
    }
  }

  /** Points every published port at `version`'s VM; the proxies listen from the first call on. */
  private async publish(version: Version): Promise<void> {
    await this.listen();
    this.active = version;
  }

  private async listen(): Promise<void> {
    if (this.proxies.length > 0 || this.options.publish.length === 0) return;
    for (const entry of this.options.publish) {
      const proxy = createServer((client) => {
        const vm = this.active ? this.vms.get(key(this.active)) : undefined;
        let port: number | undefined;
        try {
          port = vm && !vm.exit ? vm.hostPort(entry.guestPort) : undefined;
        } catch {
          port = undefined;
        }
        if (port === undefined) {
          client.destroy();
          return;
        }
        const upstream = createConnection({ host: '127.0.0.1', port });
        client.on('error', () => upstream.destroy());
        upstream.on('error', () => client.destroy());
        client.pipe(upstream).pipe(client);
      });
      await new Promise<void>((resolve, reject) => {
        proxy.once('error', (error: NodeJS.ErrnoException) =>
          reject(
            new BoardfleetError(
              'publish-failed',
              `cannot publish guest port ${entry.guestPort} on ${entry.address ?? '0.0.0.0'}:${entry.hostPort}: ${error.code ?? error.message}`,
            ),
          ),
        );
        proxy.listen(entry.hostPort, entry.address ?? '0.0.0.0', () => resolve());
      });
      this.proxies.push(proxy);
    }
  }

  /** Keeps the bundles (and consoles) of the versions given; older ones go. */
  private removeBundlesExcept(keep: Version[]): void {
    const kept = new Set(keep.map(key));
    if (!existsSync(this.options.root)) return;
    for (const artifact of readdirSync(this.options.root, { withFileTypes: true })) {
      if (!artifact.isDirectory()) continue;
      for (const entry of readdirSync(join(this.options.root, artifact.name), { withFileTypes: true })) {
        if (!entry.isDirectory() || entry.name.endsWith('.partial')) continue;
        if (kept.has(`${artifact.name}@${entry.name}`) || this.vms.has(`${artifact.name}@${entry.name}`))
          continue;
        rmSync(join(this.options.root, artifact.name, entry.name), { recursive: true, force: true });
        rmSync(join(this.options.root, artifact.name, `${entry.name}.console.log`), { force: true });
      }
    }
  }
}

/**
 * Stops a qemu left running by an agent that died without stopping it (kill -9, a crash): the
 * pid file names it, and its command line must name this bundle, so a recycled pid is left alone.
 */
async function stopOrphanedVm(
  pidFile: string,
  bundleDir: string,
  log: (line: string) => void,
): Promise<void> {
  let pid: number;
  let commandLine: string;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
    commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return;
  }
  if (!commandLine.split('\0').includes(join(bundleDir, BUNDLE_FILES.kernel))) return;
  log(`stopping the VM (pid ${pid}) an earlier agent left running`);
  const gone = () => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
    } catch {
      return true;
    }
  };
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(pid, name);
    } catch {
      // Gone meanwhile.
    }
  };
  signal('SIGTERM');
  for (let waited = 0; waited < 10_000 && !gone(); waited += 100) await delay(100);
  if (!gone()) signal('SIGKILL');
  rmSync(pidFile, { force: true });
}

function splitKey(value: string): [string, string] {
  const at = value.lastIndexOf('@');
  return [value.slice(0, at), value.slice(at + 1)];
}

/**
 * "<name> <version> <what happened>; last console lines: …", the newest lines kept when it must
 * be cut. The stack dump after a kernel panic is left out: the application's last words before
 * the panic say more, and the whole console is on the server.
 */
export function failureReason(what: string, consoleTail: string[]): string {
  const head = `${what}; last console lines:`;
  let tail = consoleTail;
  let panicAt = -1;
  consoleTail.forEach((line, index) => {
    if (/Kernel panic - not syncing/.test(line)) panicAt = index;
  });
  if (panicAt >= 0 && panicAt < consoleTail.length - 1) {
    tail = [...consoleTail.slice(0, panicAt + 1), "(the kernel's stack dump is left out here)"];
  }
  const lines: string[] = [];
  let length = head.length;
  for (const line of [...tail].reverse()) {
    const clipped = line.length > 300 ? `${line.slice(0, 297)}...` : line;
    if (length + clipped.length + 1 > REASON_MAX) break;
    lines.unshift(clipped);
    length += clipped.length + 1;
  }
  return lines.length > 0 ? `${head}\n${lines.join('\n')}` : `${what}; the console printed nothing`;
}
