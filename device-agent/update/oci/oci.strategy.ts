import { execFile } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { hostToolMissing, locateHostTool } from '../../../lib/host-tools.ts';
import { writeFileAtomically } from '../../../lib/atomic-file.ts';
import { BoardfleetError } from '../../../protocol/errors.ts';
import type { ArtifactManifest } from '../../../protocol/manifest.ts';
import { ProcessSupervisor } from '../../lib/process-supervisor.ts';
import { InstallRefusedError, type UpdateStrategy } from '../update-strategy.ts';
import { requireCgroupHierarchy } from './cgroup-hierarchy.ts';
import { closedAncestor, type ContainerIds, containerIds, letContainersPass } from './container-ids.ts';
import { applyLayer, resolveInRoot } from './layer-unpack.ts';
import {
  type ImageRunConfig,
  imageRunConfigSchema,
  ociArchitecture,
  readOciImage,
  scanImageArchive,
} from './oci-image.ts';
import { MOUNT_POINTS, publishedPorts, runtimeConfig } from './runtime-config.ts';

/** Receives each line the container prints, with the image's name and the stream it came on. */
export type ContainerOutput = (line: string, origin: { app: string; stream: 'stdout' | 'stderr' }) => void;

export interface OciStrategyOptions {
  root: string;
  /**
   * A private folder holding `root` (the agent's data dir, 0700): the containers' root group, and
   * only it, is let through the folders from it down to `root`.
   */
  privateParent?: string;
  onOutput?: ContainerOutput;
  /** The configuration variables the container gets in its environment, over the image's `Env`. */
  configEnvironment?: () => Readonly<Record<string, string>>;
  /** Where the agent runs as root: the first host id of the container's 65536 ids (as /etc/subuid gives). */
  idMapBase?: number;
  /** How long the new container has to come up healthy. */
  healthTimeoutMs?: number;
  /** With no published port to answer, how long it must keep running to count as healthy. */
  stableForMs?: number;
  searchPath?: string;
}

const IMAGE_JSON = 'image.json';
/** Host files a container on the host's network reads to resolve names. */
const HOST_NETWORK_FILES = ['/etc/resolv.conf', '/etc/hosts'];
const CHECK_INTERVAL_MS = 250;
const LAST_LINES = 5;
/** Below the supervisor's own grace (5 s), after which it kills `crun run` and not the container. */
const STOP_GRACE_MS = 4_000;

/** A container id crun takes ([A-Za-z0-9_.-]). */
const containerId = (release: string) => `boardfleet-${release.replace(/[^A-Za-z0-9_.-]/g, '_')}`;

/**
 * OCI images run with crun: each release (name@version) is unpacked into its own `rootfs-<release>`
 * (layers in order, whiteouts honoured) beside a `bundle-<release>` holding its run configuration;
 * the `current` link is switched atomically, the container runs under the agent's supervision
 * (`crun run`, restarted when it exits), and the previous version stays on disk for rollback.
 * The runtime config.json is written at each start, so a change of configuration variables
 * needs only a restart.
 */
export class OciStrategy implements UpdateStrategy {
  readonly kind = 'oci';
  private supervisor: ProcessSupervisor | null = null;
  /** The crun id of the container the supervisor runs. */
  private runningId: string | null = null;
  private restarting: Promise<void> = Promise.resolve();
  private lastLines: string[] = [];
  private readonly ids: ContainerIds;

  constructor(private readonly options: OciStrategyOptions) {
    this.ids = containerIds(options.idMapBase ?? 100_000);
    mkdirSync(options.root, { recursive: true, mode: 0o700 });
    // The runtime resolves the rootfs path as the container's root, an unprivileged host id.
    letContainersPass(options.root, options.privateParent ?? options.root, this.ids.rootGroup);
  }

  private get searchPath(): string {
    return this.options.searchPath ?? process.env.PATH ?? '';
  }

  private rootfs(release: string): string {
    return join(this.options.root, `rootfs-${release}`);
  }

  private bundle(release: string): string {
    return join(this.options.root, `bundle-${release}`);
  }

  private link(name: 'current' | 'previous'): string {
    return join(this.options.root, name);
  }

  private readLink(name: 'current' | 'previous'): string | null {
    try {
      return readlinkSync(this.link(name));
    } catch {
      return null;
    }
  }

  /** crun's path; missing, a refusal naming the Debian package. */
  private crun(): string {
    const path = locateHostTool('crun', this.searchPath);
    if (path) return path;
    const missing = hostToolMissing('crun', 'crun', this.searchPath);
    throw new InstallRefusedError(
      'tool-missing',
      `the oci strategy runs images with crun: ${missing.message}`,
    );
  }

  async install(artifactPath: string, manifest: ArtifactManifest): Promise<{ needsReboot: boolean }> {
    this.crun();
    const closed = process.getuid?.() === 0 ? closedAncestor(this.options.root, this.ids.rootGroup) : null;
    if (closed)
      throw new InstallRefusedError(
        'invalid-config',
        `containers run as unprivileged host ids, which cannot pass ${closed.dir} (mode ${closed.mode.toString(8)}): give the oci folder a parent others may enter (chmod o+x), or move it`,
      );
    const bundle = this.bundle(releaseOf(manifest.name, manifest.version));
    if (!existsSync(join(bundle, IMAGE_JSON))) await this.unpack(artifactPath, manifest);
    const current = this.readLink('current');
    if (current && current !== bundle) this.switchLink('previous', current);
    this.switchLink('current', bundle);
    await this.restartContainer();
    return { needsReboot: false };
  }

  /** Unpacks into `rootfs-<release>.partial`, renamed when complete; the bundle's image.json marks it done. */
  private async unpack(artifactPath: string, manifest: ArtifactManifest): Promise<void> {
    const label = `${manifest.name} ${manifest.version}`;
    let image;
    try {
      image = readOciImage(await scanImageArchive(artifactPath), {
        architecture: ociArchitecture(process.arch),
      });
    } catch (error) {
      if (!(error instanceof BoardfleetError)) throw error;
      throw new InstallRefusedError(error.code, `${label}: ${error.message}`);
    }
    const release = releaseOf(manifest.name, manifest.version);
    const rootfs = this.rootfs(release);
    const staging = `${rootfs}.partial`;
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    try {
      for (const layer of image.layers) await applyLayer(artifactPath, layer, staging, this.ids.hostOwner);
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      if (!(error instanceof BoardfleetError)) throw error;
      throw new InstallRefusedError(error.code, `${label}: ${error.message}`);
    }
    prepareMountPoints(staging);
    rmSync(rootfs, { recursive: true, force: true });
    renameSync(staging, rootfs);
    const bundle = this.bundle(release);
    mkdirSync(bundle, { recursive: true });
    writeFileAtomically(
      join(bundle, IMAGE_JSON),
      JSON.stringify({ name: manifest.name, config: image.config }),
    );
  }

  async healthCheck(
    _manifest: ArtifactManifest,
    signal: AbortSignal,
  ): Promise<{ healthy: true } | { healthy: false; reason: string }> {
    const bundle = this.readLink('current');
    if (!bundle) return { healthy: false, reason: 'no container installed' };
    const ports = publishedPorts(readImageJson(bundle).config).filter((port) => port.protocol === 'tcp');
    const timeoutMs = this.options.healthTimeoutMs ?? 60_000;
    const stableForMs = this.options.stableForMs ?? 5_000;
    const startedAt = Date.now();
    let lastProblem = 'not started';
    while (Date.now() - startedAt < timeoutMs && !signal.aborted) {
      const supervisor = this.supervisor;
      if (supervisor && supervisor.restarts > 0) {
        const exit = supervisor.lastExit;
        lastProblem = `container exited (${exit?.signal ? `signal ${exit.signal}` : `status ${exit?.code}`})`;
        break;
      }
      if (supervisor?.running && ports.length > 0) {
        const closed = await firstClosedPort(ports.map((port) => port.port));
        if (closed === null) return { healthy: true };
        lastProblem = `nothing answers on port ${closed}`;
      } else if (supervisor?.running) {
        if (Date.now() - startedAt >= stableForMs) return { healthy: true };
        lastProblem = 'running';
      }
      await new Promise((resolve) => setTimeout(resolve, CHECK_INTERVAL_MS));
    }
    const output = this.lastLines.length > 0 ? `; last output: ${this.lastLines.join(' | ')}` : '';
    return { healthy: false, reason: `health check failed: ${lastProblem}${output}` };
  }

  async commit(manifest: ArtifactManifest): Promise<void> {
    // Keep the committed version and the one before it; older ones go.
    const previous = this.readLink('previous');
    const keep = new Set([
      releaseOf(manifest.name, manifest.version),
      previous ? releaseOfBundle(previous) : null,
    ]);
    for (const entry of readdirSync(this.options.root)) {
      const match = /^(?:rootfs|bundle)-(.+?)(\.partial)?$/.exec(entry);
      if (match && (match[2] || !keep.has(match[1] ?? ''))) {
        rmSync(join(this.options.root, entry), { recursive: true, force: true });
      }
    }
  }

  async rollback(previous: { artifact: string; version: string } | null): Promise<{ needsReboot: boolean }> {
    await this.stopContainer();
    const bundle = previous ? this.bundle(releaseOf(previous.artifact, previous.version)) : null;
    if (bundle && existsSync(join(bundle, IMAGE_JSON))) {
      this.switchLink('current', bundle);
      await this.restartContainer();
    } else {
      rmSync(this.link('current'), { force: true });
    }
    return { needsReboot: false };
  }

  async resume(): Promise<void> {
    if (this.readLink('current')) await this.restartContainer();
  }

  async stop(): Promise<void> {
    await this.stopContainer();
  }

  /** Restarts the running container with the current configuration variables; none installed: nothing. */
  async restartWithConfig(): Promise<void> {
    if (this.readLink('current')) await this.restartContainer();
  }

  /** rename(2) over the old link is atomic: a crash leaves the old or the new link, never none. */
  private switchLink(name: 'current' | 'previous', target: string): void {
    const temporary = `${this.link(name)}.new`;
    rmSync(temporary, { force: true });
    symlinkSync(target, temporary);
    renameSync(temporary, this.link(name));
  }

  /** One restart at a time: an install and a configuration change together would start it twice. */
  private restartContainer(): Promise<void> {
    const restarted = this.restarting.then(() => this.startCurrent());
    this.restarting = restarted.catch(() => undefined);
    return restarted;
  }

  /**
   * crun's state beside the strategy's versions; no cgroups: the agent sets no resource limits,
   * and a device's cgroup setup (v1, hybrid, or none mounted on a minimal image) then cannot
   * stop a container.
   */
  private crunGlobalOptions(): string[] {
    return ['--root', join(this.options.root, 'crun-state'), '--cgroup-manager=disabled'];
  }

  /**
   * SIGTERM to the container's first process, SIGKILL after a grace period, then `crun delete
   * --force`: a first process that ignores SIGTERM (PID 1 without a handler does) costs the
   * grace period, never a container left running.
   */
  private async stopContainer(): Promise<void> {
    const supervisor = this.supervisor;
    const id = this.runningId;
    this.supervisor = null;
    this.runningId = null;
    if (!id) return;
    await this.runCrun(['kill', id, 'TERM']);
    // SIGKILL to the container's first process takes its whole PID namespace with it; until
    // then `crun run` does not end (the container holds its output pipes open).
    const kill = setTimeout(() => void this.runCrun(['kill', id, 'KILL']), STOP_GRACE_MS);
    await supervisor?.stop();
    clearTimeout(kill);
    await this.runCrun(['delete', '--force', id]);
  }

  /** One crun command on the strategy's containers; its failure (no such container) is no error here. */
  private runCrun(args: string[]): Promise<void> {
    const crun = locateHostTool('crun', this.searchPath);
    if (!crun) return Promise.resolve();
    return new Promise((resolve) => {
      const child = execFile(crun, [...this.crunGlobalOptions(), ...args], () => resolve());
      child.on('error', () => resolve());
    });
  }

  private async startCurrent(): Promise<void> {
    await this.stopContainer();
    const bundle = this.readLink('current');
    if (!bundle) return;
    const crun = this.crun();
    await requireCgroupHierarchy();
    const release = releaseOfBundle(bundle);
    const { name, config } = readImageJson(bundle);
    const rootfs = this.rootfs(release);
    const spec = runtimeConfig(config, {
      rootfs,
      hostname: name,
      uidMappings: this.ids.uidMappings,
      gidMappings: this.ids.gidMappings,
      environment: this.options.configEnvironment?.() ?? {},
      passwd: readOptional(resolveInRoot(rootfs, ['etc', 'passwd'], true)),
      group: readOptional(resolveInRoot(rootfs, ['etc', 'group'], true)),
      hostNetworkFiles: HOST_NETWORK_FILES.filter((file) => existsSync(file)),
    });
    // Only the agent reads it: the configuration variables in its environment may be secrets.
    writeFileAtomically(join(bundle, 'config.json'), JSON.stringify(spec, null, 2), { mode: 0o600 });
    const id = containerId(release);
    // A container crun still knows (the agent was killed) would block `crun run` with its id.
    await this.runCrun(['delete', '--force', id]);
    this.lastLines = [];
    this.runningId = id;
    this.supervisor = new ProcessSupervisor(
      [crun, ...this.crunGlobalOptions(), 'run', '--bundle', bundle, id],
      {
        cwd: bundle,
        env: {},
        onOutput: (line, stream) => {
          this.lastLines = [...this.lastLines, line].slice(-LAST_LINES);
          this.options.onOutput?.(line, { app: name, stream });
        },
      },
    );
    this.supervisor.start();
  }
}

/** What names an image's folders: its name and version (`@` is in neither), as two images may share a version. */
const releaseOf = (name: string, version: string) => `${name}@${version}`;

/** `…/bundle-<release>` → release. */
const releaseOfBundle = (bundle: string) => bundle.slice(bundle.lastIndexOf('/bundle-') + '/bundle-'.length);

function readImageJson(bundle: string): { name: string; config: ImageRunConfig } {
  const saved = JSON.parse(readFileSync(join(bundle, IMAGE_JSON), 'utf8')) as {
    name: string;
    config: unknown;
  };
  return { name: saved.name, config: imageRunConfigSchema.parse(saved.config) };
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * The folders and files the runtime mounts over must exist in the root: it is read-only, and the
 * container's root may not create them in a root the host's root owns.
 */
function prepareMountPoints(rootfs: string): void {
  for (const dir of MOUNT_POINTS) {
    const path = resolveInRoot(rootfs, [dir], false);
    if (existsSync(path) && !lstatSync(path).isDirectory()) rmSync(path, { force: true });
    mkdirSync(path, { recursive: true });
  }
  for (const file of HOST_NETWORK_FILES) {
    const path = resolveInRoot(rootfs, file.split('/').filter(Boolean), false);
    mkdirSync(join(path, '..'), { recursive: true });
    // A link (Ubuntu's resolv.conf → systemd) would point the bind mount somewhere else.
    if (existsSync(path) || isLink(path)) rmSync(path, { recursive: true, force: true });
    writeFileSync(path, '');
  }
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** The first of `ports` on which nothing accepts a TCP connection on this device, or null. */
async function firstClosedPort(ports: number[]): Promise<number | null> {
  for (const port of ports) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port, timeout: 1_000 });
      socket.on('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('timeout', () => {
        socket.destroy();
        resolve(false);
      });
      socket.on('error', () => resolve(false));
    });
    if (!open) return port;
  }
  return null;
}
