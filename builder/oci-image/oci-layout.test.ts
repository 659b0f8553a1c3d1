import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as tar from 'tar';
import { afterAll, describe, expect, it } from 'vitest';
import { writeOciLayout } from './oci-layout.ts';

const scratch = mkdtempSync(join(tmpdir(), 'boardfleet-oci-layout-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const EPOCH = 1_780_000_000;
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Every entry of a tar: path, mtime (s), uid and bytes. */
async function entries(bytes: Buffer) {
  const found: Array<{ path: string; mtime: number; uid: number | undefined; content: Buffer }> = [];
  const parser = new tar.Parser({
    onReadEntry: (entry) => {
      const chunks: Buffer[] = [];
      entry.on('data', (chunk: Buffer) => chunks.push(chunk));
      entry.on('end', () =>
        found.push({
          path: entry.path,
          mtime: Math.floor((entry.mtime?.getTime() ?? 0) / 1000),
          uid: entry.uid,
          content: Buffer.concat(chunks),
        }),
      );
    },
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    parser.end(bytes);
  });
  return found;
}

/** A small root made at `name`, its files touched at `mtime` (what differs between two checkouts). */
function root(name: string, mtime: number): string {
  const dir = join(scratch, name, 'root');
  mkdirSync(join(dir, 'app', 'lib'), { recursive: true });
  writeFileSync(join(dir, 'app', 'server.mjs'), 'console.log("hi")\n');
  writeFileSync(join(dir, 'app', 'lib', 'b.js'), 'b');
  writeFileSync(join(dir, 'app', 'a.js'), 'a');
  symlinkSync('server.mjs', join(dir, 'app', 'main.mjs'));
  for (const path of ['app/server.mjs', 'app/lib/b.js', 'app/a.js'])
    utimesSync(join(dir, path), mtime, mtime);
  return dir;
}

async function layout(name: string, mtime: number): Promise<Buffer> {
  const outFile = join(scratch, name, 'image.oci.tar');
  await writeOciLayout({
    rootDir: root(name, mtime),
    config: { Entrypoint: ['/usr/bin/node', 'server.mjs'], WorkingDir: '/app' },
    architecture: 'arm64',
    epoch: EPOCH,
    refName: '1.0.0',
    workDir: join(scratch, name, 'work'),
    outFile,
  });
  return readFileSync(outFile);
}

describe('writeOciLayout', () => {
  it("gives the same bytes from two folders that differ only in their files' times", async () => {
    const first = await layout('first', 1_000_000);
    const second = await layout('second', 2_000_000);
    expect(sha256(second)).toBe(sha256(first));
  });

  it('writes oci-layout and index.json first, then blobs named by their digests, chained index → manifest → config and layer', async () => {
    const files = await entries(await layout('chain', 1_000_000));
    const regular = files.filter((file) => !file.path.endsWith('/'));
    expect(regular.slice(0, 2).map((file) => file.path)).toEqual(['oci-layout', 'index.json']);
    const blob = (digest: string) => {
      const file = regular.find(
        (candidate) => candidate.path === `blobs/sha256/${digest.slice('sha256:'.length)}`,
      );
      expect(file, digest).toBeDefined();
      expect(`sha256:${sha256(file!.content)}`).toBe(digest);
      return file!.content;
    };
    const index = JSON.parse(regular[1]!.content.toString());
    expect(index.manifests[0]).toMatchObject({
      platform: { architecture: 'arm64', os: 'linux' },
      annotations: { 'org.opencontainers.image.ref.name': '1.0.0' },
    });
    const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
    const config = JSON.parse(blob(manifest.config.digest).toString());
    expect(config).toMatchObject({
      architecture: 'arm64',
      os: 'linux',
      created: new Date(EPOCH * 1000).toISOString(),
      config: { Entrypoint: ['/usr/bin/node', 'server.mjs'], WorkingDir: '/app' },
    });
    const layer = gunzipSync(blob(manifest.layers[0].digest));
    expect(config.rootfs.diff_ids).toEqual([`sha256:${sha256(layer)}`]);
    const inLayer = await entries(layer);
    expect(inLayer.map((entry) => entry.path)).toEqual([
      'app/',
      'app/a.js',
      'app/lib/',
      'app/lib/b.js',
      'app/main.mjs',
      'app/server.mjs',
    ]);
    // One time for every file; folders carry none in the portable form.
    for (const entry of [...inLayer, ...files]) {
      expect(entry.mtime, entry.path).toBe(entry.path.endsWith('/') ? 0 : EPOCH);
      expect(entry.uid ?? 0, entry.path).toBe(0);
    }
  });
});
