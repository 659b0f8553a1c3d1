import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { containerIds } from './container-ids.ts';
import { applyLayer, layerPathParts, resolveInRoot } from './layer-unpack.ts';
import { readOciImage, scanImageArchive } from './oci-image.ts';
import { dockerSaveEntries, ociLayoutEntries, type TestTarEntry, writeTar } from './oci-test-images.ts';

const dir = mkdtempSync(join(tmpdir(), 'oci-layers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let count = 0;

/** Builds an image of `layers`, applies them in order to a fresh root inside `dir`/n/root, returns the root. */
async function unpacked(
  layers: TestTarEntry[][],
  format = ociLayoutEntries,
  hostOwner?: Parameters<typeof applyLayer>[3],
): Promise<string> {
  const base = join(dir, String(count++));
  mkdirSync(base);
  const archive = writeTar(join(base, 'image.tar'), format({ layers }));
  const image = readOciImage(await scanImageArchive(archive));
  const root = join(base, 'root');
  mkdirSync(root);
  for (const layer of image.layers) await applyLayer(archive, layer, root, hostOwner);
  return root;
}

const read = (root: string, path: string) => readFileSync(join(root, path), 'utf8');

describe('layerPathParts', () => {
  it.each([
    ['./usr/bin/app', ['usr', 'bin', 'app']],
    ['etc//app.conf', ['etc', 'app.conf']],
    ['dir/', ['dir']],
  ])('splits %s', (path, parts) => expect(layerPathParts(path)).toEqual(parts));

  it.each(['/etc/passwd', '../escape', 'a/../../b'])('refuses %s as a path escape', (path) => {
    expect(() => layerPathParts(path)).toThrow(/absolute path|leaves the root/);
  });
});

describe('resolveInRoot', () => {
  it('follows links inside the root and stops absolute and .. targets at the root', async () => {
    const root = await unpacked([
      [
        { path: 'usr/bin', type: 'Directory' },
        { path: 'bin', type: 'SymbolicLink', linkpath: 'usr/bin' },
        { path: 'up', type: 'SymbolicLink', linkpath: '../../../..' },
        { path: 'abs', type: 'SymbolicLink', linkpath: '/usr' },
      ],
    ]);
    expect(resolveInRoot(root, ['bin', 'sh'], true)).toBe(join(root, 'usr/bin/sh'));
    expect(resolveInRoot(root, ['up', 'etc'], true)).toBe(join(root, 'etc'));
    expect(resolveInRoot(root, ['abs', 'bin'], true)).toBe(join(root, 'usr/bin'));
    expect(resolveInRoot(root, ['bin'], false)).toBe(join(root, 'bin'));
  });
});

describe('applyLayer', () => {
  it('writes files, folders and links, a later layer over an earlier one', async () => {
    const root = await unpacked([
      [
        { path: 'app', content: 'v1', mode: 0o755 },
        { path: 'etc', type: 'Directory' },
        { path: 'etc/conf', content: 'one' },
        { path: 'etc/conf-link', type: 'SymbolicLink', linkpath: 'conf' },
        { path: 'etc/conf-hard', type: 'Link', linkpath: 'etc/conf' },
      ],
      [{ path: 'app', content: 'v2', mode: 0o700 }],
    ]);
    expect(read(root, 'app')).toBe('v2');
    expect(lstatSync(join(root, 'app')).mode & 0o777).toBe(0o700);
    expect(readlinkSync(join(root, 'etc/conf-link'))).toBe('conf');
    expect(read(root, 'etc/conf-hard')).toBe('one');
  });

  it('applies the plain layer tars of a docker save archive', async () => {
    const root = await unpacked(
      [
        [
          { path: 'app', content: 'v1' },
          { path: 'old', content: 'x' },
        ],
        [{ path: '.wh.old', content: '' }],
      ],
      dockerSaveEntries,
    );
    expect(read(root, 'app')).toBe('v1');
    expect(existsSync(join(root, 'old'))).toBe(false);
  });

  it('deletes what a whiteout names in lower layers, not what the same layer wrote', async () => {
    const root = await unpacked([
      [
        { path: 'gone', content: 'x' },
        { path: 'gone-dir/file', content: 'x' },
        { path: 'kept', content: 'x' },
      ],
      [
        { path: '.wh.gone', content: '' },
        { path: '.wh.gone-dir', content: '' },
        { path: 'new', content: 'this layer' },
        { path: '.wh.new', content: '' },
      ],
    ]);
    expect(existsSync(join(root, 'gone'))).toBe(false);
    expect(existsSync(join(root, 'gone-dir'))).toBe(false);
    expect(read(root, 'kept')).toBe('x');
    expect(read(root, 'new')).toBe('this layer');
    expect(existsSync(join(root, '.wh.new'))).toBe(false);
  });

  it('empties an opaque folder of lower layers only', async () => {
    const root = await unpacked([
      [
        { path: 'data/old', content: 'x' },
        { path: 'data/sub/older', content: 'x' },
      ],
      [
        { path: 'data', type: 'Directory' },
        { path: 'data/early', content: 'this layer, before the marker' },
        { path: 'data/.wh..wh..opq', content: '' },
        { path: 'data/late', content: 'this layer' },
      ],
    ]);
    expect(readFileSync(join(root, 'data/early'), 'utf8')).toMatch(/this layer/);
    expect(read(root, 'data/late')).toBe('this layer');
    expect(existsSync(join(root, 'data/old'))).toBe(false);
    expect(existsSync(join(root, 'data/sub'))).toBe(false);
  });

  it('keeps writes through a planted link inside the root', async () => {
    const outside = join(dir, 'outside');
    mkdirSync(outside, { recursive: true });
    const root = await unpacked([
      [
        { path: 'escape', type: 'SymbolicLink', linkpath: outside },
        { path: 'dotdot', type: 'SymbolicLink', linkpath: '../../../../../../../..' + outside },
        { path: 'file-link', type: 'SymbolicLink', linkpath: join(outside, 'victim') },
      ],
      [
        { path: 'escape/planted', content: 'x' },
        { path: 'dotdot/planted2', content: 'x' },
        { path: 'file-link', content: 'replaces the link' },
      ],
    ]);
    expect(existsSync(join(outside, 'planted'))).toBe(false);
    expect(existsSync(join(outside, 'planted2'))).toBe(false);
    expect(existsSync(join(outside, 'victim'))).toBe(false);
    expect(read(root, `${outside}/planted`)).toBe('x');
    expect(read(root, 'file-link')).toBe('replaces the link');
  });

  it.each<[string, TestTarEntry]>([
    ['a .. path', { path: '../evil', content: 'x' }],
    ['an absolute path', { path: '/evil', content: 'x' }],
    ['a hard link out of the root', { path: 'evil', type: 'Link', linkpath: '../../etc/passwd' }],
  ])('refuses %s', async (_name, entry) => {
    await expect(unpacked([[entry]])).rejects.toThrow(/absolute path|leaves the root/);
    expect(existsSync(join(dir, 'evil'))).toBe(false);
  });
});

describe.runIf(process.getuid?.() === 0)('layer owners when the agent is root', () => {
  const { hostOwner } = containerIds(200_000);

  it("shifts each entry to the containers' host ids: root in the image owns its files as host id 200000", async () => {
    const root = await unpacked(
      [
        [
          { path: 'etc', type: 'Directory' },
          { path: 'etc/shadow', content: 'secret', mode: 0o600 },
          { path: 'home/app/data', content: 'x', uid: 1000, gid: 1000 },
          { path: 'bin/sh', type: 'SymbolicLink', linkpath: 'busybox' },
        ],
      ],
      ociLayoutEntries,
      hostOwner,
    );
    const owner = (path: string) => {
      const stats = lstatSync(join(root, path));
      return [stats.uid, stats.gid];
    };
    expect(owner('etc')).toEqual([200_000, 200_000]);
    expect(owner('etc/shadow')).toEqual([200_000, 200_000]);
    expect(owner('home/app/data')).toEqual([201_000, 201_000]);
    expect(owner('bin/sh')).toEqual([200_000, 200_000]);
  });

  it('refuses an entry owned by an id the container cannot map', async () => {
    await expect(
      unpacked([[{ path: 'nobody-file', content: 'x', uid: 70_000 }]], ociLayoutEntries, hostOwner),
    ).rejects.toThrow(/nobody-file is owned by 70000:0, outside the ids 0…65535/);
  });
});
