import { lstatSync } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { BoardfleetError } from '../../../protocol/errors.ts';
import { ELF_MACHINE, type ElfInfo, readElfInfo } from '../../native/elf-file.ts';
import type { TreeWriter } from './tree-writer.ts';

/** An extracted Debian package: `root` holds its data.tar as `dpkg-deb -x` writes it. */
export interface PackageTree {
  name: string;
  root: string;
}

/** Debian's multiarch directory name per architecture. */
const TRIPLET = { arm64: 'aarch64-linux-gnu', amd64: 'x86_64-linux-gnu' } as const;

/**
 * Copies the shared libraries programs need, following DT_NEEDED from library to library and
 * the symlink chains Debian ships (libstdc++.so.6 → libstdc++.so.6.0.30), taking each library
 * from the first package tree that has it in the multiarch, then the plain, library directories.
 */
export class LibraryResolver {
  private readonly present = new Set<string>();
  private readonly copied = new Set<string>();
  private readonly directories: string[];

  constructor(
    private readonly tree: TreeWriter,
    private readonly trees: PackageTree[],
    /** What the programs run on: a Linux board, or a virtual machine. */
    private readonly board: { id: string; architecture: keyof typeof TRIPLET },
    private readonly used: Set<string>,
  ) {
    const triplet = TRIPLET[board.architecture];
    this.directories = [`lib/${triplet}`, `usr/lib/${triplet}`, 'lib', 'usr/lib'];
  }

  installed(): string[] {
    return [...this.copied];
  }

  private async requireMachine(path: string, what: string): Promise<ElfInfo> {
    const info = await readElfInfo(path);
    const expected = ELF_MACHINE[this.board.architecture];
    if (info.machine !== expected) {
      throw new BoardfleetError(
        'rootfs-wrong-architecture',
        `${what} (${path}) is built for ELF machine ${info.machine}; ${this.board.id} needs ${this.board.architecture} (machine ${expected})`,
      );
    }
    return info;
  }

  /** For a recipe package's file: programs and libraries of this architecture get their libraries. */
  async installIfProgram(path: string, label: string): Promise<void> {
    let info: ElfInfo;
    try {
      info = await readElfInfo(path);
    } catch (error) {
      // Firmware blobs and other machines' ELF files (32-bit, big-endian) are data here.
      if (error instanceof BoardfleetError && error.code === 'elf-invalid') return;
      throw error;
    }
    if (info.machine !== ELF_MACHINE[this.board.architecture]) return;
    await this.resolve(info, label);
  }

  /** For a program the image must run: one for another machine is an error. */
  async install(path: string, label: string): Promise<void> {
    await this.resolve(await this.requireMachine(path, label), label);
  }

  private async resolve(first: ElfInfo, firstLabel: string): Promise<void> {
    const queue: Array<{ info: ElfInfo; label: string }> = [{ info: first, label: firstLabel }];
    while (queue.length > 0) {
      const { info, label } = queue.shift()!;
      if (info.interpreter) await this.copyChain(this.locateExact(info.interpreter.slice(1), label));
      for (const name of info.needed) {
        if (this.present.has(name)) continue;
        this.present.add(name);
        const real = await this.copyChain(this.locate(name, label));
        queue.push({ info: await this.requireMachine(real, name), label: name });
      }
    }
  }

  private locate(name: string, neededBy: string): { tree: PackageTree; path: string } {
    for (const directory of this.directories) {
      for (const tree of this.trees) {
        if (existsSyncSafe(join(tree.root, directory, name))) return { tree, path: `${directory}/${name}` };
      }
    }
    throw new BoardfleetError(
      'rootfs-library-missing',
      `${neededBy} needs ${name}, which none of the packages (${this.trees.map((tree) => tree.name).join(', ')}) ` +
        `has in ${this.directories.join(', ')}: add the package that ships it to the recipe`,
    );
  }

  private locateExact(path: string, neededBy: string): { tree: PackageTree; path: string } {
    for (const tree of this.trees) if (existsSyncSafe(join(tree.root, path))) return { tree, path };
    throw new BoardfleetError(
      'rootfs-library-missing',
      `${neededBy} asks for the program interpreter /${path}, which none of the packages has (libc6 ships it)`,
    );
  }

  /** Copies a path and, if it is a symlink, what it points to, until a file; returns that file's host path. */
  private async copyChain(start: { tree: PackageTree; path: string }): Promise<string> {
    let path = start.path;
    for (let hops = 0; hops < 16; hops++) {
      const host = join(start.tree.root, path);
      const fresh = !(await this.tree.exists(path));
      if ((await lstat(host)).isSymbolicLink()) {
        const target = await readlink(host);
        if (fresh) {
          await this.tree.symlink(path, target);
          this.copied.add(path);
        }
        path = target.startsWith('/')
          ? target.slice(1)
          : posix.normalize(posix.join(posix.dirname(path), target));
        continue;
      }
      if (fresh) {
        await this.tree.copy(host, path);
        this.copied.add(path);
      }
      this.used.add(start.tree.name);
      return host;
    }
    throw new BoardfleetError(
      'rootfs-symlink-loop',
      `${join(start.tree.root, start.path)}: too many symlinks`,
    );
  }
}

function existsSyncSafe(path: string): boolean {
  try {
    return lstatSync(path) !== undefined;
  } catch {
    return false;
  }
}
