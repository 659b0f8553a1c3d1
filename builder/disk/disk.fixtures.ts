import { chmod, chown, cp, lchown, mkdir, mkdtemp, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { walkTree } from './file-tree.ts';

export const EPOCH = 1_700_000_000;
export const MIB = 1024 * 1024;

/** Bytes that do not compress to nothing, the same on every run. */
export function pseudoRandomBytes(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed >>> 0 || 1;
  for (let index = 0; index < length; index++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[index] = state & 0xff;
  }
  return bytes;
}

export async function scratchDirectory(name: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `boardfleet-${name}-`));
}

/** A boot partition's files: config.txt at the root, one slot directory, a nested overlay. */
export async function makeBootTree(root: string): Promise<void> {
  await mkdir(join(root, 'slot-a', 'overlays'), { recursive: true });
  await writeFile(join(root, 'config.txt'), 'arm_64bit=1\nos_prefix=slot-a/\n');
  await writeFile(
    join(root, 'slot-a', 'cmdline.txt'),
    'console=ttyAMA0 root=PARTUUID=b0a4df1e-02 boardfleet.slot=a\n',
  );
  await writeFile(join(root, 'slot-a', 'vmlinuz'), pseudoRandomBytes(200_000, 1));
  await writeFile(join(root, 'slot-a', 'overlays', 'disable-bt.dtbo'), pseudoRandomBytes(1_500, 2));
}

/** A root filesystem's files: directories, an executable, a symlink, a setuid file. */
export async function makeRootTree(root: string): Promise<void> {
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(join(root, 'etc', 'boardfleet'), { recursive: true });
  await mkdir(join(root, 'empty'));
  await writeFile(join(root, 'bin', 'busybox'), pseudoRandomBytes(300_000, 3), { mode: 0o755 });
  await symlink('busybox', join(root, 'bin', 'sh'));
  await writeFile(join(root, 'bin', 'su-helper'), 'x', { mode: 0o4755 });
  await writeFile(join(root, 'etc', 'hostname'), 'boardfleet\n');
  await writeFile(join(root, 'etc', 'boardfleet', 'slots.json'), '{"boot":"/dev/mmcblk0p1"}\n');
  await writeFile(join(root, 'init'), '#!/bin/sh\nexec /bin/sh\n', { mode: 0o755 });
}

/**
 * A copy of `source` that differs in everything a reproducible build must ignore: path, inode
 * numbers, mtimes and atimes, ctimes (it is made later) and, where the test may, owners.
 */
export async function perturbedCopy(source: string, target: string): Promise<void> {
  await cp(source, target, { recursive: true, verbatimSymlinks: true });
  const entries = await walkTree(target);
  let shift = 1;
  for (const entry of entries.reverse()) {
    const path = join(target, entry.path);
    if (process.getuid?.() === 0) {
      if (entry.type === 'symlink') await lchown(path, 1234, 1234);
      else {
        await chown(path, 1234, 1234);
        // chown clears the setuid bit, even as root; the copy must keep the source's modes.
        await chmod(path, entry.mode);
      }
    }
    if (entry.type !== 'symlink') await utimes(path, 1_000_000_000 + shift, 1_200_000_000 + shift);
    shift += 7_777;
  }
  await utimes(target, 1_100_000_000, 1_100_000_000);
}
