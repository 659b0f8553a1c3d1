import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import type { AppBundleManifest } from '../../device-agent/update/app-bundle.strategy.ts';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import { uploadArtifact } from './artifacts.ts';
import type { TestServer } from './test-server.ts';

export interface BundleOptions {
  name: string;
  version: string;
  /** The bundle's health check fails (exits 3) instead of passing. */
  unhealthy?: boolean;
  /** Incompressible bytes added to the bundle, to make a download take a while. */
  paddingBytes?: number;
  /** A Node.js program (`app.js`) run as the app instead of the `sleep`. */
  script?: string;
}

/**
 * An app bundle (tar.gz with `boardfleet-app.json`) whose app is a `sleep` in its release
 * directory: cheap enough for twenty devices on two cores, and its working directory tells which
 * version runs. The health check is a command that passes, or (unhealthy) exits 3.
 */
export async function buildAppBundle(options: BundleOptions): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'boardfleet-bundle-'));
  try {
    const manifest: AppBundleManifest = {
      start: options.script ? [process.execPath, 'app.js'] : ['sleep', '100000'],
      env: { APP_VERSION: options.version },
      healthCheck: options.unhealthy
        ? { command: ['sh', '-c', 'echo "app is unhealthy" >&2; exit 3'], timeoutSeconds: 2 }
        : { command: ['test', '-f', 'boardfleet-app.json'], timeoutSeconds: 10 },
    };
    writeFileSync(join(dir, 'boardfleet-app.json'), JSON.stringify(manifest));
    const files = ['boardfleet-app.json'];
    if (options.script) {
      writeFileSync(join(dir, 'app.js'), options.script);
      files.push('app.js');
    }
    if (options.paddingBytes) {
      writeFileSync(join(dir, 'padding.bin'), randomBytes(options.paddingBytes));
      files.push('padding.bin');
    }
    const file = join(dir, 'bundle.tar.gz');
    await tar.c({ gzip: true, file, cwd: dir, portable: true }, files);
    return readFileSync(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Builds a bundle, uploads it for `board` and makes a release named `<name>-<version>` of it. */
export async function releaseAppBundle(
  server: Pick<TestServer, 'httpUrl' | 'adminToken'>,
  board: string,
  options: BundleOptions,
): Promise<{ release: string; artifact: ArtifactRecord }> {
  const artifact = await uploadArtifact(server, await buildAppBundle(options), {
    name: options.name,
    version: options.version,
    boards: [board],
  });
  const release = `${options.name}-${options.version}`;
  const response = await fetch(`${server.httpUrl}/api/v1/releases`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: release, artifacts: { [board]: artifact.id } }),
  });
  if (response.status !== 201) throw new Error(`release failed: ${response.status} ${await response.text()}`);
  return { release, artifact };
}
