import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readOciImage, scanImageArchive } from './oci-image.ts';
import { dockerSaveEntries, ociLayoutEntries, type TestTarEntry, writeTar } from './oci-test-images.ts';

const dir = mkdtempSync(join(tmpdir(), 'oci-image-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let count = 0;
const archiveOf = async (entries: TestTarEntry[]) =>
  scanImageArchive(writeTar(join(dir, `${count++}.tar`), entries));

const image = {
  config: { Entrypoint: ['/app'], Cmd: ['--port', '8080'], Env: ['A=1'], ExposedPorts: { '8080/tcp': {} } },
  layers: [[{ path: 'app', content: 'v1', mode: 0o755 }], [{ path: 'etc/app.conf', content: 'x' }]],
};

/** Replaces the content of the first entry whose path matches. */
const withContent = (entries: TestTarEntry[], match: (path: string) => boolean, content: string) => {
  const i = entries.findIndex((entry) => match(entry.path));
  return entries.map((entry, j) => (j === i ? { path: entry.path, content } : entry));
};
const without = (entries: TestTarEntry[], path: string) => entries.filter((entry) => entry.path !== path);

describe('readOciImage', () => {
  it.each([
    ['an OCI image layout', ociLayoutEntries(image), 'oci-layout'],
    ['a docker save archive', dockerSaveEntries(image), 'docker-save'],
  ])('reads the configuration and the layers in order from %s', async (_name, entries, format) => {
    const read = readOciImage(await archiveOf(entries));
    expect(read.format).toBe(format);
    expect(read.config.Entrypoint).toEqual(['/app']);
    expect(read.config.Cmd).toEqual(['--port', '8080']);
    expect(read.layers).toHaveLength(2);
    const layerPaths = entries.filter(
      (entry) => entry.path.includes('blobs/') || entry.path.endsWith('layer.tar'),
    );
    for (const layer of read.layers) expect(layerPaths.map((entry) => entry.path)).toContain(layer);
  });

  const layout = ociLayoutEntries(image);
  const saved = dockerSaveEntries(image);
  it.each<[string, TestTarEntry[], RegExp]>([
    [
      'a tar of something else',
      [{ path: 'hello.txt', content: 'hi' }],
      /not an OCI image layout .* nor a docker save archive/,
    ],
    ['a layout without index.json', without(layout, 'index.json'), /has no index.json/],
    [
      'a layout version 2',
      withContent(layout, (p) => p === 'oci-layout', '{"imageLayoutVersion":"2.0.0"}'),
      /version 2.0.0/,
    ],
    [
      'an index that is not JSON',
      withContent(layout, (p) => p === 'index.json', '{'),
      /index.json \(the image index\) is not JSON/,
    ],
    [
      'a tampered blob',
      withContent(layout, (p) => p.startsWith('blobs/'), 'evil'),
      /does not match its digest/,
    ],
    ['a missing layer blob', layout.slice(0, -1), /has no blobs\/sha256\//],
    [
      'a docker save with a changed layer',
      withContent(saved, (p) => p.endsWith('layer.tar'), 'evil'),
      /does not match its diff_id/,
    ],
    [
      'a docker save with a changed config',
      withContent(saved, (p) => p.endsWith('.json') && p !== 'manifest.json', '{}'),
      /does not match its digest/,
    ],
    [
      'a docker save of two images',
      withContent(
        saved,
        (p) => p === 'manifest.json',
        '[{"Config":"a","Layers":[]},{"Config":"b","Layers":[]}]',
      ),
      /lists 2 images/,
    ],
  ])('refuses %s in one line', async (_name, entries, message) => {
    const archive = await archiveOf(entries);
    expect(() => readOciImage(archive)).toThrow(message);
  });

  it('picks the manifest of the wanted architecture and names the ones there are', async () => {
    const archive = await archiveOf(ociLayoutEntries({ ...image, architecture: 'arm64' }));
    expect(readOciImage(archive, { architecture: 'arm64' }).architecture).toBe('arm64');
    expect(() => readOciImage(archive, { architecture: 'amd64' })).toThrow(
      /no manifest for amd64 \(it has arm64\)/,
    );
  });

  it('refuses a file that is not a tar', async () => {
    const path = join(dir, 'not.tar');
    writeFileSync(path, 'just text, not a tar archive at all'.repeat(40));
    await expect(scanImageArchive(path)).rejects.toThrow(/not a tar archive/);
  });
});
