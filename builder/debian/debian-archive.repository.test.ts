import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BoardfleetError } from '../../protocol/errors.ts';
import { parseRelease } from './debian-control.ts';
import {
  DebianArchive,
  type ArchiveIndexInfo,
  type ArchiveProgressEvent,
} from './debian-archive.repository.ts';
import { DebianTools } from './debian-tools.repository.ts';

// Shared across runs (and with kernel-modules.test.ts): a warm rerun downloads only InRelease.
const CACHE_DIR = join(homedir(), '.cache', 'boardfleet', 'test-debian');
const MIRROR = 'http://deb.debian.org/debian';
const IN_RELEASE_URL = `${MIRROR}/dists/bookworm/InRelease`;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const downloads = (events: ArchiveProgressEvent[]) => events.filter((event) => event.type === 'download');

/** A stand-in mirror on localhost: chosen paths are answered by the test, the rest by deb.debian.org. */
async function startMirror(
  routes: Record<string, (request: IncomingMessage, response: ServerResponse) => void>,
) {
  const requests: { path: string; range: string | undefined }[] = [];
  const server = createServer((request, response) => {
    const path = (request.url ?? '/').replace(/^\/debian/, '');
    requests.push({ path, range: request.headers.range });
    const route = routes[path];
    if (route) {
      route(request, response);
      return;
    }
    fetch(`${MIRROR}${path}`)
      .then(async (real) => {
        response.writeHead(real.status, { 'content-type': 'application/octet-stream' });
        response.end(Buffer.from(await real.arrayBuffer()));
      })
      .catch(() => response.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/debian`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const serve = (body: Buffer) => (_request: IncomingMessage, response: ServerResponse) => {
  response.writeHead(200, { 'content-length': body.length });
  response.end(body);
};

async function realFile(path: string): Promise<Buffer> {
  const response = await fetch(`${MIRROR}/${path}`);
  expect(response.status).toBe(200);
  return Buffer.from(await response.arrayBuffer());
}

describe('DebianArchive against deb.debian.org', () => {
  const events: ArchiveProgressEvent[] = [];
  const archive = new DebianArchive({ cacheDir: CACHE_DIR, onProgress: (event) => events.push(event) });
  let scratch: string;

  let loaded: ArchiveIndexInfo;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'boardfleet-debian-'));
    loaded = await archive.loadIndex();
  });

  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('verifies InRelease with gpgv and pins the index by its sha256', async () => {
    expect(archive.indexId).toMatch(/^[0-9a-f]{64}$/);
    expect(loaded).toMatchObject({ indexId: archive.indexId, offline: false });
    expect(loaded.signedBy.length).toBeGreaterThan(0);
    expect(loaded.signedBy.every((fingerprint) => /^[0-9A-F]{40}$/.test(fingerprint))).toBe(true);
    expect(archive.release.codename).toBe('bookworm');
    expect(archive.release.sha256.get('main/binary-arm64/Packages.xz')?.size).toBeGreaterThan(1_000_000);
    expect(downloads(events).some((event) => event.url === IN_RELEASE_URL)).toBe(true);

    // The same snapshot again, by its id: nothing from the network, the same packages.
    const pinnedEvents: ArchiveProgressEvent[] = [];
    const pinned = new DebianArchive({
      cacheDir: CACHE_DIR,
      onProgress: (event) => pinnedEvents.push(event),
    });
    const info = await pinned.loadIndex({ indexId: archive.indexId });
    expect(info).toMatchObject({ indexId: archive.indexId, offline: true });
    expect(info.packages).toBeGreaterThan(50_000);
    expect(downloads(pinnedEvents)).toEqual([]);
    expect(pinned.find('busybox-static')).toEqual(archive.find('busybox-static'));
  });

  it('asks the mirror nothing when the last InRelease is younger than maxIndexAgeSeconds', async () => {
    const warmEvents: ArchiveProgressEvent[] = [];
    const warm = new DebianArchive({
      cacheDir: CACHE_DIR,
      components: ['non-free-firmware'],
      maxIndexAgeSeconds: 3600,
      onProgress: (event) => warmEvents.push(event),
    });
    const info = await warm.loadIndex();
    expect(info.offline).toBe(true);
    expect(downloads(warmEvents)).toEqual([]);
    expect(warmEvents.map((event) => [event.type, event.what])).toEqual([
      ['cached', 'InRelease'],
      ['cached', 'bookworm/non-free-firmware/binary-arm64/Packages.xz'],
    ]);
    expect(warm.indexId).toBe(archive.indexId);
  });

  it('resolves busybox-static alone, with what the builder needs to fetch and describe it', () => {
    const [busybox, ...rest] = archive.resolve(['busybox-static']);
    expect(rest).toEqual([]);
    expect(busybox).toMatchObject({
      name: 'busybox-static',
      architecture: 'arm64',
      source: 'busybox',
      component: 'main',
      requiredBy: [],
      requested: true,
    });
    expect(busybox?.filename).toMatch(/^pool\/main\/b\/busybox\/busybox-static_.*_arm64\.deb$/);
    expect(busybox?.url).toBe(`${MIRROR}/${busybox?.filename}`);
    expect(busybox?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(busybox?.version).toMatch(/^1:1\.35\.0-/);
  });

  it('resolves libstdc++6 to libc6, libgcc-s1 and gcc-12-base', () => {
    const closure = archive.resolve(['libstdc++6']);
    expect(closure.map((pkg) => pkg.name)).toEqual(['gcc-12-base', 'libc6', 'libgcc-s1', 'libstdc++6']);
    expect(closure.find((pkg) => pkg.name === 'libc6')?.requiredBy).toEqual(['libgcc-s1', 'libstdc++6']);
    expect(closure.find((pkg) => pkg.name === 'libc6')?.source).toBe('glibc');
  });

  it('follows the kernel metapackage to the versioned kernel package', () => {
    const closure = archive.resolve(['linux-image-arm64'], {
      exclude: ['kmod', 'linux-base', 'initramfs-tools'],
    });
    expect(closure.map((pkg) => pkg.name)).toEqual([
      expect.stringMatching(/^linux-image-6\.1\.0-\d+-arm64$/),
      'linux-image-arm64',
    ]);
  });

  it('names an unknown package and who wanted it', () => {
    expect(() => archive.resolve(['busybox-statc'])).toThrow(
      `busybox-statc (wanted by the requested package list) is not in bookworm (main, non-free-firmware) for arm64 at ${MIRROR}`,
    );
  });

  it('downloads a package once, then serves it from the cache', async () => {
    const [libgcc] = archive.resolve(['libgcc-s1'], { exclude: ['libc6', 'gcc-12-base'] });
    if (!libgcc) throw new Error('libgcc-s1 not resolved');
    await rm(join(CACHE_DIR, 'debs', `${libgcc.sha256}.deb`), { force: true });

    events.length = 0;
    const path = await archive.fetch(libgcc);
    expect(path).toBe(join(CACHE_DIR, 'debs', `${libgcc.sha256}.deb`));
    expect(sha256(await readFile(path))).toBe(libgcc.sha256);
    const firstDownloads = downloads(events);
    expect(firstDownloads.at(-1)).toEqual({
      type: 'download',
      what: `libgcc-s1 ${libgcc.version}`,
      url: libgcc.url,
      receivedBytes: libgcc.size,
      totalBytes: libgcc.size,
    });
    const { mtimeMs } = await stat(path);

    events.length = 0;
    expect(await archive.fetch(libgcc)).toBe(path);
    expect(downloads(events)).toEqual([]);
    expect(events).toEqual([
      { type: 'cached', what: `libgcc-s1 ${libgcc.version}`, path, bytes: libgcc.size },
    ]);
    expect((await stat(path)).mtimeMs).toBe(mtimeMs);

    events.length = 0;
    const [busybox] = archive.resolve(['busybox-static']);
    if (!busybox) throw new Error('busybox-static not resolved');
    const paths = await archive.fetchAll([busybox, libgcc]);
    expect(paths).toEqual([await archive.fetch(busybox), path]);
  });

  it('throws away a corrupted cached .deb and downloads it again', async () => {
    const [busybox] = archive.resolve(['busybox-static']);
    if (!busybox) throw new Error('busybox-static not resolved');
    const path = await archive.fetch(busybox);
    const bytes = await readFile(path);
    bytes[1000] = (bytes[1000] as number) ^ 0xff;
    await writeFile(path, bytes);

    events.length = 0;
    expect(await archive.fetch(busybox)).toBe(path);
    expect(events[0]).toEqual({ type: 'cache-corrupt', what: `busybox-static ${busybox.version}`, path });
    expect(downloads(events).length).toBeGreaterThan(0);
    expect(sha256(await readFile(path))).toBe(busybox.sha256);
  });

  it('extracts busybox-static to bin/busybox, an arm64 executable, without root', async () => {
    const [busybox] = archive.resolve(['busybox-static']);
    if (!busybox) throw new Error('busybox-static not resolved');
    const destination = join(scratch, 'busybox');
    const files = await archive.extract(await archive.fetch(busybox), destination);
    expect(files).toContain('bin/busybox');
    expect(files).toEqual([...files].sort());
    expect(files.every((file) => !file.startsWith('/') && !file.startsWith('./'))).toBe(true);
    const binary = join(destination, 'bin/busybox');
    expect((await stat(binary)).mode & 0o7777).toBe(0o755);
    const header = (await readFile(binary)).subarray(0, 20);
    expect(header.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(header.readUInt16LE(18)).toBe(183); // EM_AARCH64
  });

  it('keeps symbolic links when extracting (libc6 links its dynamic loader)', async () => {
    const libc = archive.resolve(['libc6'], { exclude: ['libgcc-s1'] }).find((pkg) => pkg.name === 'libc6');
    if (!libc) throw new Error('libc6 not resolved');
    const destination = join(scratch, 'libc6');
    const files = await archive.extract(await archive.fetch(libc), destination);
    expect(files).toContain('lib/ld-linux-aarch64.so.1');
    const loader = join(destination, 'lib/ld-linux-aarch64.so.1');
    expect((await lstat(loader)).isSymbolicLink()).toBe(true);
    expect(await readlink(loader)).toBe('aarch64-linux-gnu/ld-linux-aarch64.so.1');
    expect((await stat(loader)).isFile()).toBe(true);
  });

  it('unpacks a package once into the cache and reuses the tree', async () => {
    const [busybox] = archive.resolve(['busybox-static']);
    if (!busybox) throw new Error('busybox-static not resolved');
    const first = await archive.unpack(busybox);
    expect(first.root).toBe(join(CACHE_DIR, 'unpacked', busybox.sha256));
    expect(first.files).toContain('bin/busybox');
    events.length = 0;
    expect(await archive.unpack(busybox)).toEqual(first);
    expect(events.map((event) => event.type)).toEqual(['cached']);
  });
});

describe('DebianArchive refusing what it cannot verify', () => {
  let scratch: string;
  let inRelease: Buffer;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'boardfleet-debian-bad-'));
    inRelease = await realFile('dists/bookworm/InRelease');
  });

  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  const newArchive = async (
    mirror: string,
    options: { keyring?: string; events?: ArchiveProgressEvent[] } = {},
  ) =>
    new DebianArchive({
      mirror,
      cacheDir: await mkdtemp(join(scratch, 'cache-')),
      components: ['non-free-firmware'],
      keyring: options.keyring,
      onProgress: (event) => options.events?.push(event),
    });

  it('refuses an InRelease changed after signing, with the URL in the message', async () => {
    const text = inRelease.toString('utf8');
    expect(text).toContain('\nLabel: Debian\n');
    const tampered = Buffer.from(text.replace('\nLabel: Debian\n', '\nLabel: Debiam\n'), 'utf8');
    const mirror = await startMirror({ '/dists/bookworm/InRelease': serve(tampered) });
    try {
      const archive = await newArchive(mirror.url);
      const url = `${mirror.url}/dists/bookworm/InRelease`;
      await expect(archive.loadIndex()).rejects.toMatchObject({
        code: 'archive-signature',
        message: `${url} has a bad OpenPGP signature from 6ED0E7B82643E131 (Debian Archive Automatic Signing Key (12/bookworm) <ftpmaster@debian.org>): it was changed after it was signed, refusing it`,
      });
      expect(await readdir(join(archive.cacheDir, 'releases'))).toEqual([]);
      expect(mirror.requests.map((request) => request.path)).toEqual(['/dists/bookworm/InRelease']);
    } finally {
      await mirror.close();
    }
  });

  it('refuses an InRelease with unsigned text around the signed message', async () => {
    const padded = Buffer.concat([Buffer.from('Suite: bookworm\n\n'), inRelease]);
    const mirror = await startMirror({ '/dists/bookworm/InRelease': serve(padded) });
    try {
      const archive = await newArchive(mirror.url);
      await expect(archive.loadIndex()).rejects.toMatchObject({
        code: 'archive-signature',
        message: `${mirror.url}/dists/bookworm/InRelease is not one clearsigned message (text outside the signature, or no signature at all): refusing it`,
      });
    } finally {
      await mirror.close();
    }
  });

  it('refuses an InRelease when the keyring holds none of its signers', async () => {
    const keyring = '/usr/share/keyrings/debian-archive-bullseye-stable.gpg';
    const archive = await newArchive(MIRROR, { keyring });
    await expect(archive.loadIndex()).rejects.toMatchObject({
      code: 'archive-signature',
      message: expect.stringMatching(
        new RegExp(
          `^${escapeRegExp(`${IN_RELEASE_URL} cannot be trusted: it is signed only by keys not in ${keyring} or no longer valid (6ED0E7B82643E131`)}(, [0-9A-F]{16})+\\)$`,
        ),
      ),
    });
  });

  it('names the keyring package when the keyring is missing', async () => {
    const archive = await newArchive(MIRROR, { keyring: join(scratch, 'nothing.gpg') });
    await expect(archive.loadIndex()).rejects.toThrow(
      `the keyring ${join(scratch, 'nothing.gpg')} does not exist: install it with "sudo apt-get install debian-archive-keyring" or pass another keyring`,
    );
  });

  it('refuses a Packages index whose sha256 is not the one InRelease lists', async () => {
    const release = parseRelease(inRelease.toString('utf8'), 'InRelease');
    const expected = release.sha256.get('non-free-firmware/binary-arm64/Packages.xz');
    if (!expected) throw new Error('InRelease lists no non-free-firmware index');
    const byHash = `/dists/bookworm/non-free-firmware/binary-arm64/by-hash/SHA256/${expected.sha256}`;
    const packages = await realFile(byHash.slice(1));
    packages[100] = (packages[100] as number) ^ 0x01;
    const mirror = await startMirror({
      '/dists/bookworm/InRelease': serve(inRelease),
      [byHash]: serve(packages),
    });
    try {
      const archive = await newArchive(mirror.url);
      await expect(archive.loadIndex()).rejects.toMatchObject({
        code: 'archive-hash-mismatch',
        message: `bookworm/non-free-firmware/binary-arm64/Packages.xz downloaded from ${mirror.url}${byHash} does not match ${mirror.url}/dists/bookworm/InRelease: sha256 ${sha256(packages)}, expected ${expected.sha256}; the download was discarded`,
      });
      expect(await readdir(join(archive.cacheDir, 'indexes'))).toEqual([]);
    } finally {
      await mirror.close();
    }
  });

  it('refuses a served .deb whose sha256 does not match the index, keeping nothing', async () => {
    const mirror = await startMirror({ '/dists/bookworm/InRelease': serve(inRelease) });
    try {
      const archive = await newArchive(mirror.url);
      await archive.loadIndex();
      const [firmware] = archive.resolve(['firmware-ast']);
      if (!firmware) throw new Error('firmware-ast not resolved');
      const corrupt = await realFile(firmware.filename);
      corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] as number) ^ 0x01;
      const route = `/${firmware.filename}`;
      const corruptMirror = await startMirror({
        '/dists/bookworm/InRelease': serve(inRelease),
        [route]: serve(corrupt),
      });
      try {
        const fromCorrupt = new DebianArchive({ mirror: corruptMirror.url, cacheDir: archive.cacheDir });
        await expect(fromCorrupt.fetch(firmware)).rejects.toMatchObject({
          code: 'archive-hash-mismatch',
          message: `firmware-ast ${firmware.version} downloaded from ${corruptMirror.url}${route} does not match the Packages index: sha256 ${sha256(corrupt)}, expected ${firmware.sha256}; the download was discarded`,
        });
        expect(await readdir(join(archive.cacheDir, 'debs'))).toEqual([]);
      } finally {
        await corruptMirror.close();
      }
    } finally {
      await mirror.close();
    }
  });

  it('resumes a download cut short with a Range request', async () => {
    const mirror = await startMirror({ '/dists/bookworm/InRelease': serve(inRelease) });
    try {
      const archive = await newArchive(mirror.url);
      await archive.loadIndex();
      const [firmware] = archive.resolve(['firmware-zd1211']);
      if (!firmware) throw new Error('firmware-zd1211 not resolved');
      const body = await realFile(firmware.filename);
      const half = Math.floor(body.length / 2);
      const route = `/${firmware.filename}`;
      const flaky = await startMirror({
        [route]: (request, response) => {
          const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? '');
          if (range) {
            const start = Number(range[1]);
            response.writeHead(206, {
              'content-length': body.length - start,
              'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
            });
            response.end(body.subarray(start));
            return;
          }
          response.writeHead(200, { 'content-length': body.length });
          response.write(body.subarray(0, half), () => response.destroy());
        },
      });
      try {
        const resuming = new DebianArchive({ mirror: flaky.url, cacheDir: archive.cacheDir });
        const path = await resuming.fetch(firmware);
        expect(sha256(readFileSync(path))).toBe(firmware.sha256);
        expect(flaky.requests).toEqual([
          { path: route, range: undefined },
          { path: route, range: `bytes=${half}-` },
        ]);
      } finally {
        await flaky.close();
      }
    } finally {
      await mirror.close();
    }
  });

  it('gives up when the download is cut short twice', async () => {
    const mirror = await startMirror({ '/dists/bookworm/InRelease': serve(inRelease) });
    try {
      const archive = await newArchive(mirror.url);
      await archive.loadIndex();
      const [firmware] = archive.resolve(['firmware-ast']);
      if (!firmware) throw new Error('firmware-ast not resolved');
      const route = `/${firmware.filename}`;
      const broken = await startMirror({
        [route]: (_request, response) => {
          response.writeHead(200, { 'content-length': firmware.size });
          response.write(Buffer.alloc(100), () => setTimeout(() => response.destroy(), 50));
        },
      });
      try {
        const fromBroken = new DebianArchive({ mirror: broken.url, cacheDir: archive.cacheDir });
        const error = await fromBroken.fetch(firmware).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(BoardfleetError);
        expect((error as BoardfleetError).code).toBe('archive-download-failed');
        // Under load the client may see the close before the 100 bytes; both counts are honest.
        expect((error as BoardfleetError).message).toMatch(
          new RegExp(
            `^${escapeRegExp(`firmware-ast ${firmware.version}: the download from ${broken.url}${route} stopped early twice (other side closed; then other side closed after `)}(0|100)${escapeRegExp(` of ${firmware.size} bytes)`)}$`,
          ),
        );
        expect(await readdir(join(archive.cacheDir, 'debs'))).toEqual([]);
      } finally {
        await broken.close();
      }
    } finally {
      await mirror.close();
    }
  });

  it('says which mirror it cannot reach', async () => {
    // A port that was free a moment ago: nothing listens there.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const archive = await newArchive(`http://127.0.0.1:${port}/debian`);
    await expect(archive.loadIndex()).rejects.toMatchObject({
      code: 'archive-unreachable',
      message: `cannot reach http://127.0.0.1:${port}/debian/dists/bookworm/InRelease: connect ECONNREFUSED 127.0.0.1:${port}`,
    });
  });

  it('names the Debian package of a missing tool', async () => {
    const archive = new DebianArchive({
      cacheDir: await mkdtemp(join(scratch, 'cache-')),
      components: ['non-free-firmware'],
      tools: new DebianTools(join(scratch, 'no-such-bin')),
    });
    await expect(archive.loadIndex()).rejects.toMatchObject({
      code: 'tool-missing',
      message: 'gpgv is not installed: install it with "sudo apt-get install gpgv"',
    });
  });
});
