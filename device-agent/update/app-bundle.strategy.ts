import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import semver from 'semver';
import * as tar from 'tar';
import {
  APP_BUNDLE_MANIFEST as APP_MANIFEST,
  type AppBundleManifest,
  appBundleManifestSchema,
} from '../../protocol/app-bundle-manifest.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import { ProcessSupervisor } from '../lib/process-supervisor.ts';
import type { UpdateStrategy } from './update-strategy.ts';

export { type AppBundleManifest, appBundleManifestSchema } from '../../protocol/app-bundle-manifest.ts';

/** Receives each line the app prints, with the app's name and the stream it came on. */
export type AppOutput = (line: string, origin: { app: string; stream: 'stdout' | 'stderr' }) => void;

const CHECK_INTERVAL_MS = 250;

/**
 * Application bundles: each version is extracted into its own directory under `releases/`, the
 * `current` symlink is switched atomically (a new link renamed over the old), the app runs under
 * the agent's supervision, and the previous version stays on disk for rollback.
 */
export class AppBundleStrategy implements UpdateStrategy {
  readonly kind = 'app-bundle';
  private supervisor: ProcessSupervisor | null = null;
  private restarting: Promise<void> = Promise.resolve();

  constructor(
    private readonly root: string,
    private readonly onOutput: AppOutput = () => {},
    /** The configuration variables the app gets in its environment, over the bundle's own `env`. */
    private readonly configEnvironment: () => Readonly<Record<string, string>> = () => ({}),
  ) {
    mkdirSync(join(root, 'releases'), { recursive: true });
  }

  /** Restarts the installed app with the current configuration variables (no new release); none: nothing. */
  async restartWithConfig(): Promise<void> {
    if (this.currentDir()) await this.restartApp();
  }

  private releaseDir(manifest: { name?: string; artifact?: string; version: string }): string {
    return join(this.root, 'releases', `${manifest.name ?? manifest.artifact}-${manifest.version}`);
  }

  private link(name: 'current' | 'previous'): string {
    return join(this.root, name);
  }

  /** Where `current` points, or null. */
  currentDir(): string | null {
    try {
      return readlinkSync(this.link('current'));
    } catch {
      return null;
    }
  }

  async install(artifactPath: string, manifest: ArtifactManifest): Promise<{ needsReboot: boolean }> {
    const target = this.releaseDir(manifest);
    if (!existsSync(join(target, APP_MANIFEST))) {
      const staging = `${target}.partial`;
      rmSync(staging, { recursive: true, force: true });
      mkdirSync(staging, { recursive: true });
      try {
        await tar.x({ file: artifactPath, cwd: staging, strict: true });
      } catch (error) {
        rmSync(staging, { recursive: true, force: true });
        throw new BoardfleetError(
          'bad-bundle',
          `${manifest.name} ${manifest.version} is not a valid tar.gz bundle: ${(error as Error).message}`,
        );
      }
      readAppManifest(staging, `${manifest.name} ${manifest.version}`);
      rmSync(target, { recursive: true, force: true });
      renameSync(staging, target);
    }
    const current = this.currentDir();
    if (current && current !== target) this.switchLink('previous', current);
    this.switchLink('current', target);
    await this.restartApp();
    return { needsReboot: false };
  }

  async healthCheck(
    _manifest: ArtifactManifest,
    signal: AbortSignal,
  ): Promise<{ healthy: true } | { healthy: false; reason: string }> {
    const dir = this.currentDir();
    if (!dir) return { healthy: false, reason: 'no application installed' };
    const app = readAppManifest(dir, dir);
    const deadline = Date.now() + app.healthCheck.timeoutSeconds * 1000;
    let lastProblem = 'no answer yet';
    while (Date.now() < deadline && !signal.aborted) {
      const supervisor = this.supervisor;
      if (supervisor && supervisor.restarts > 0 && !supervisor.running) {
        const exit = supervisor.lastExit;
        lastProblem = `app exited (${exit?.signal ? `signal ${exit.signal}` : `status ${exit?.code}`})`;
      } else if (app.healthCheck.command) {
        const code = await runCheck(app.healthCheck.command, dir);
        if (code === 0 && supervisor?.running) return { healthy: true };
        lastProblem = `health command exited with status ${code}`;
      } else if (app.healthCheck.http) {
        try {
          const response = await fetch(app.healthCheck.http, { signal: AbortSignal.timeout(2_000) });
          if (response.ok) return { healthy: true };
          lastProblem = `${app.healthCheck.http} answered ${response.status}`;
        } catch (error) {
          lastProblem = `${app.healthCheck.http}: ${(error as Error).message}`;
        }
      } else if (supervisor?.running && Date.now() > deadline - app.healthCheck.timeoutSeconds * 500) {
        // No explicit check: the app counts as healthy once it has kept running for half the timeout.
        return { healthy: true };
      }
      await new Promise((resolve) => setTimeout(resolve, CHECK_INTERVAL_MS));
    }
    return {
      healthy: false,
      reason: `health check failed after ${app.healthCheck.timeoutSeconds} s: ${lastProblem}`,
    };
  }

  async commit(manifest: ArtifactManifest): Promise<void> {
    // Keep the committed version and the one before it; older releases go.
    const keep = new Set([this.releaseDir(manifest), this.readLink('previous')]);
    for (const entry of readdirSync(join(this.root, 'releases'))) {
      const path = join(this.root, 'releases', entry);
      if (!keep.has(path)) rmSync(path, { recursive: true, force: true });
    }
  }

  async rollback(previous: { artifact: string; version: string } | null): Promise<{ needsReboot: boolean }> {
    await this.supervisor?.stop();
    this.supervisor = null;
    const target = previous ? this.releaseDir(previous) : null;
    if (target && existsSync(target)) {
      this.switchLink('current', target);
      await this.restartApp();
    } else {
      rmSync(this.link('current'), { force: true });
    }
    return { needsReboot: false };
  }

  async resume(): Promise<void> {
    if (this.currentDir()) await this.restartApp();
  }

  async stop(): Promise<void> {
    await this.supervisor?.stop();
    this.supervisor = null;
  }

  private readLink(name: 'current' | 'previous'): string | null {
    try {
      return readlinkSync(this.link(name));
    } catch {
      return null;
    }
  }

  /** rename(2) over the old link is atomic: a crash leaves the old or the new link, never none. */
  private switchLink(name: 'current' | 'previous', target: string): void {
    const temporary = `${this.link(name)}.new`;
    rmSync(temporary, { force: true });
    symlinkSync(target, temporary);
    renameSync(temporary, this.link(name));
  }

  /** One restart at a time: an install and a config change restarting together would start the app twice. */
  private restartApp(): Promise<void> {
    const restarted = this.restarting.then(() => this.startCurrentApp());
    this.restarting = restarted.catch(() => undefined);
    return restarted;
  }

  private async startCurrentApp(): Promise<void> {
    await this.supervisor?.stop();
    const dir = this.currentDir();
    if (!dir) return;
    const app = readAppManifest(dir, dir);
    const name = appNameOf(basename(dir));
    this.supervisor = new ProcessSupervisor(app.start, {
      cwd: dir,
      env: { ...app.env, ...this.configEnvironment() },
      onOutput: (line, stream) => this.onOutput(line, { app: name, stream }),
    });
    this.supervisor.start();
  }
}

/** The name (artifact) of the app installed under `root` (the strategy's root), or null. */
export function installedAppName(root: string): string | null {
  try {
    return appNameOf(basename(readlinkSync(join(root, 'current'))));
  } catch {
    return null;
  }
}

/** `releases/<name>-<version>` → name: the version is the part after the first `-` that is a semantic version. */
function appNameOf(releaseDir: string): string {
  for (let dash = releaseDir.indexOf('-'); dash !== -1; dash = releaseDir.indexOf('-', dash + 1)) {
    if (semver.valid(releaseDir.slice(dash + 1)) === releaseDir.slice(dash + 1))
      return releaseDir.slice(0, dash);
  }
  return releaseDir;
}

function readAppManifest(dir: string, label: string): AppBundleManifest {
  const path = join(dir, APP_MANIFEST);
  if (!existsSync(path))
    throw new BoardfleetError('bad-bundle', `${label} has no ${APP_MANIFEST} at its top level`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new BoardfleetError(
      'bad-bundle',
      `${label}: ${APP_MANIFEST} is not JSON: ${(error as Error).message}`,
    );
  }
  const parsed = appBundleManifestSchema.safeParse(json);
  if (!parsed.success) {
    throw new BoardfleetError(
      'bad-bundle',
      `${label}: ${APP_MANIFEST}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}

function runCheck(command: string[], cwd: string): Promise<number> {
  return new Promise((resolve) => {
    const [file, ...args] = command as [string, ...string[]];
    const child = spawn(file, args, { cwd, stdio: 'ignore', timeout: 10_000 });
    child.on('error', () => resolve(127));
    child.on('close', (code) => resolve(code ?? 1));
  });
}
