import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findHostTool } from '../../../lib/host-tools.ts';
import type { ArtifactManifest } from '../../../protocol/manifest.ts';
import { freePort } from '../../../test/support/databases.ts';
import { InstallRefusedError } from '../update-strategy.ts';
import { OciStrategy } from './oci.strategy.ts';
import { ociLayoutEntries, type TestImage, type TestTarEntry, writeTar } from './oci-test-images.ts';

const dir = mkdtempSync(join(tmpdir(), 'oci-strategy-'));
// The container's user is an unprivileged host id: it must reach the roots under this folder.
chmodSync(dir, 0o711);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const manifestOf = (version: string): ArtifactManifest => ({
  schemaVersion: 1,
  name: 'hello',
  version,
  kind: 'oci-image',
  boards: ['generic-x64'],
  sha256: '0'.repeat(64),
  size: 1,
  createdAt: 0,
});

/** The host's busybox and the libraries it loads (from ldd), as one layer: a small real userland. */
function busyboxLayer(): TestTarEntry[] {
  const libraries = execFileSync('ldd', ['/bin/busybox'], { encoding: 'utf8' })
    .split('\n')
    .flatMap((line) => /(\/\S+) \(0x/.exec(line.replace(/^.*=> /, ''))?.[1] ?? []);
  return [
    { path: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
    { path: 'bin/sh', type: 'SymbolicLink', linkpath: 'busybox' },
    ...libraries.map((library) => ({ path: library.slice(1), content: readFileSync(library), mode: 0o755 })),
  ];
}

function imageFile(name: string, image: TestImage): string {
  return writeTar(join(dir, `${name}.tar`), ociLayoutEntries(image));
}

const signal = new AbortController().signal;

const HYBRID_CGROUP2 = '/sys/fs/cgroup/unified/cgroup.controllers';

/**
 * The PATH to find crun on. This test machine mounts cgroups in hybrid mode with a controller
 * (hugetlb) on the cgroup2 part, which crun 1.8 refuses even with no cgroup manager; there crun
 * is reached through a wrapper that hides that part in a private mount namespace. Devices with
 * cgroup v2 only, v1 only or none mounted run crun as it is.
 */
function crunSearchPath(): string {
  const path = process.env.PATH ?? '';
  if (!existsSync(HYBRID_CGROUP2) || readFileSync(HYBRID_CGROUP2, 'utf8').trim() === '') return path;
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const crun = execFileSync('sh', ['-c', 'command -v crun || true'], { encoding: 'utf8' }).trim();
  if (!crun) return path;
  writeFileSync(
    join(bin, 'crun'),
    `#!/bin/sh\nexec unshare --mount --propagation private sh -c 'mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec ${crun} "$@"' crun "$@"\n`,
  );
  chmodSync(join(bin, 'crun'), 0o755);
  return `${bin}:${path}`;
}

describe('oci strategy, refusals before anything changes', () => {
  it('refuses to install without crun, naming the Debian package', async () => {
    const strategy = new OciStrategy({ root: join(dir, 'no-crun'), searchPath: '' });
    const file = imageFile('no-crun', { layers: [[{ path: 'app', content: 'x' }]] });
    const installing = strategy.install(file, manifestOf('1.0.0'));
    await expect(installing).rejects.toBeInstanceOf(InstallRefusedError);
    await expect(installing).rejects.toThrow(/crun is not installed.*apt-get install crun/);
    expect(existsSync(join(dir, 'no-crun', 'current'))).toBe(false);
  });
});

describe.runIf(process.getuid?.() === 0)('oci strategy run by root', () => {
  it('refuses to install where the unprivileged container user cannot reach its root', async () => {
    const closed = join(dir, 'closed');
    mkdirSync(closed, { mode: 0o700 });
    const strategy = new OciStrategy({ root: join(closed, 'oci'), searchPath: crunSearchPath() });
    const file = imageFile('closed', { layers: [[{ path: 'app', content: 'x' }]] });
    await expect(strategy.install(file, manifestOf('1.0.0'))).rejects.toThrow(
      new RegExp(`cannot pass ${closed} \\(mode 700\\)`),
    );
    expect(existsSync(join(closed, 'oci', 'current'))).toBe(false);
  });

  it("runs a container under the agent's private data dir, passable by the containers' root group alone, its files its own", async () => {
    const dataDir = join(dir, 'agent-data');
    mkdirSync(dataDir, { mode: 0o700 });
    writeFileSync(join(dataDir, 'credentials.json'), '{}', { mode: 0o600 });
    const lines: string[] = [];
    const strategy = new OciStrategy({
      root: join(dataDir, 'oci'),
      privateParent: dataDir,
      idMapBase: 300_000,
      onOutput: (line) => lines.push(line),
      stableForMs: 1_000,
      healthTimeoutMs: 30_000,
      searchPath: crunSearchPath(),
    });
    try {
      // A file only its owner may read: root in the container, host id 300000 on the device.
      const image: TestImage = {
        config: { Cmd: ['/bin/sh', '-c', 'busybox cat /etc/app.key; busybox id -u; exec busybox sleep 600'] },
        layers: [busyboxLayer(), [{ path: 'etc/app.key', content: 'key-1\n', mode: 0o600 }]],
      };
      await strategy.install(imageFile('private', image), manifestOf('1.0.0'));
      expect(await strategy.healthCheck(manifestOf('1.0.0'), signal)).toEqual({ healthy: true });
      expect(lines).toEqual(['key-1', '0']);
      expect(lstatSync(join(dataDir, 'oci', 'rootfs-hello@1.0.0', 'etc', 'app.key')).uid).toBe(300_000);
      const passable = lstatSync(dataDir);
      expect([passable.mode & 0o777, passable.gid]).toEqual([0o710, 300_000]);
      expect(lstatSync(join(dataDir, 'credentials.json')).mode & 0o777).toBe(0o600);
    } finally {
      await strategy.stop();
    }
  });
});

describe('oci strategy with crun', () => {
  const root = join(dir, 'device');
  const lines: string[] = [];
  let port: number;
  let strategy: OciStrategy;
  let layer: TestTarEntry[];
  const greeting = { value: 'hello' };

  /** An image serving its version over HTTP on `port` with busybox httpd, after printing GREETING. */
  const serving = (version: string): TestImage => ({
    config: {
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: [
        `echo "greeting=$GREETING"; busybox mkdir -p /tmp/www; echo ${version} > /tmp/www/index.html; exec busybox httpd -f -p ${port} -h /tmp/www`,
      ],
      ExposedPorts: { [`${port}/tcp`]: {} },
    },
    layers: [layer, [{ path: 'etc/version', content: version }]],
  });

  beforeAll(async () => {
    await findHostTool('crun', { crun: 'crun' }, process.env.PATH ?? '');
    port = await freePort();
    layer = busyboxLayer();
    strategy = new OciStrategy({
      root,
      onOutput: (line) => lines.push(line),
      configEnvironment: () => ({ GREETING: greeting.value }),
      healthTimeoutMs: 30_000,
      stableForMs: 1_000,
      searchPath: crunSearchPath(),
    });
  });
  afterAll(() => strategy?.stop());

  const answer = async () =>
    (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5_000) })).text();

  it('installs v1 and v2, each healthy on its published port, keeping v1 for rollback', async () => {
    await strategy.install(imageFile('v1', serving('1.0.0')), manifestOf('1.0.0'));
    expect(await strategy.healthCheck(manifestOf('1.0.0'), signal)).toEqual({ healthy: true });
    expect(await answer()).toBe('1.0.0\n');
    await strategy.commit(manifestOf('1.0.0'));
    await strategy.install(imageFile('v2', serving('2.0.0')), manifestOf('2.0.0'));
    expect(await strategy.healthCheck(manifestOf('2.0.0'), signal)).toEqual({ healthy: true });
    expect(await answer()).toBe('2.0.0\n');
    await strategy.commit(manifestOf('2.0.0'));
    expect(readlinkSync(join(root, 'previous'))).toBe(join(root, 'bundle-hello@1.0.0'));
    expect(readFileSync(join(root, 'rootfs-hello@2.0.0/etc/version'), 'utf8')).toBe('2.0.0');
    expect(lines).toContain('greeting=hello');
  });

  it('gives the configuration variables to the container when restarted with a new configuration', async () => {
    greeting.value = 'bonjour';
    await strategy.restartWithConfig();
    expect(await strategy.healthCheck(manifestOf('2.0.0'), signal)).toEqual({ healthy: true });
    expect(lines).toContain('greeting=bonjour');
  });

  it('finds a crashing v3 unhealthy with its last output, and rolls back to v2', async () => {
    const crashing: TestImage = {
      config: {
        Cmd: ['/bin/sh', '-c', 'echo "v3 cannot open its database"; exit 3'],
        ExposedPorts: { [`${port}/tcp`]: {} },
      },
      layers: [layer],
    };
    await strategy.install(imageFile('v3', crashing), manifestOf('3.0.0'));
    const health = await strategy.healthCheck(manifestOf('3.0.0'), signal);
    expect(health).toMatchObject({
      healthy: false,
      reason: expect.stringMatching(/status 3.*v3 cannot open its database/),
    });
    await strategy.rollback({ artifact: 'hello', version: '2.0.0' });
    expect(await strategy.healthCheck(manifestOf('2.0.0'), signal)).toEqual({ healthy: true });
    expect(await answer()).toBe('2.0.0\n');
  });

  it('refuses an image that is not one, leaving v2 running', async () => {
    const file = writeTar(join(dir, 'junk.tar'), [{ path: 'hello.txt', content: 'hi' }]);
    const installing = strategy.install(file, manifestOf('4.0.0'));
    await expect(installing).rejects.toBeInstanceOf(InstallRefusedError);
    await expect(installing).rejects.toThrow(/hello 4.0.0: not an OCI image layout/);
    expect(await answer()).toBe('2.0.0\n');
  });

  it('keeps two images of the same version apart, and rolls back from one to the other', async () => {
    const other = { ...manifestOf('2.0.0'), name: 'other' };
    const image = serving('2.0.0');
    image.layers = [layer, [{ path: 'tmp-www-version', content: 'other' }]];
    image.config = {
      ...image.config,
      Cmd: [
        `busybox mkdir -p /tmp/www; echo other > /tmp/www/index.html; exec busybox httpd -f -p ${port} -h /tmp/www`,
      ],
    };
    await strategy.install(imageFile('other', image), other);
    expect(await strategy.healthCheck(other, signal)).toEqual({ healthy: true });
    expect(await answer()).toBe('other\n');
    await strategy.rollback({ artifact: 'hello', version: '2.0.0' });
    expect(await strategy.healthCheck(manifestOf('2.0.0'), signal)).toEqual({ healthy: true });
    expect(await answer()).toBe('2.0.0\n');
  });
});
