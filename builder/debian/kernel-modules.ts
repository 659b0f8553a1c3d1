import { existsSync, openSync, readFileSync, readSync, closeSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';

/** Module files to ship, in load order, and the wanted modules the kernel already has built in. */
export interface ModuleClosure {
  /**
   * Paths relative to the modules root (`kernel/fs/ext4/ext4.ko`), each after everything it
   * needs: its `depends=` modules and the `pre:` soft dependencies that exist as modules.
   */
  files: string[];
  /** Wanted modules that are built into the kernel (nothing to ship), by normalised name, sorted. */
  builtin: string[];
  /**
   * modules.dep lines for `files` (hard dependencies only, as depmod writes them), for a
   * `modprobe` in the image. Debian's packages ship no modules.dep: depmod makes it on install.
   */
  modulesDep: string;
}

/** A module's name as the kernel knows it: `virtio-blk`, `virtio_blk.ko.xz` → `virtio_blk`. */
export function moduleName(nameOrPath: string): string {
  return basename(nameOrPath)
    .replace(/\.ko(\.(xz|zst|gz))?$/, '')
    .replace(/-/g, '_');
}

interface ModuleInfo {
  depends: string[];
  pre: string[];
  post: string[];
  aliases: string[];
}

/**
 * The module files needed for `wanted` (names with `_` or `-`) under `modulesRoot`
 * (`<root>/lib/modules/<version>`). Dependencies come from each module's own `.modinfo`
 * (`depends=`, `softdep=`), which is what depmod reads, so no modules.dep is needed;
 * `modules.builtin` says which wanted names need no file. Unknown names throw
 * `kernel-module-unknown`.
 */
export function moduleClosure(modulesRoot: string, wanted: string[]): ModuleClosure {
  const files = listModuleFiles(modulesRoot);
  const builtinNames = readBuiltin(modulesRoot);
  const infos = new Map<string, ModuleInfo>();
  const infoOf = (name: string): ModuleInfo => {
    let info = infos.get(name);
    if (!info) {
      info = readModuleInfo(join(modulesRoot, files.get(name) as string));
      infos.set(name, info);
    }
    return info;
  };
  let aliases: Map<string, string[]> | undefined;
  /** Soft dependencies may name an alias (`crypto-crc32c`); absent or built-in ones are optional. */
  const softTargets = (target: string): string[] => {
    const name = moduleName(target);
    if (files.has(name)) return [name];
    if (!aliases) {
      aliases = new Map();
      for (const candidate of [...files.keys()].sort()) {
        for (const alias of infoOf(candidate).aliases)
          aliases.set(alias, [...(aliases.get(alias) ?? []), candidate]);
      }
    }
    return aliases.get(target) ?? [];
  };

  const ordered: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string, chain: string[]) => {
    if (done.has(name)) return;
    if (!files.has(name)) throw unknownModule(name, chain, modulesRoot, files.keys());
    if (visiting.has(name)) {
      throw new BoardfleetError(
        'kernel-module-cycle',
        `kernel modules depend on each other in a cycle: ${[...chain, name].join(' → ')}`,
      );
    }
    visiting.add(name);
    const info = infoOf(name);
    for (const soft of info.pre) for (const target of softTargets(soft)) visit(target, [...chain, name]);
    for (const need of info.depends) visit(moduleName(need), [...chain, name]);
    visiting.delete(name);
    done.add(name);
    ordered.push(name);
    for (const soft of info.post) for (const target of softTargets(soft)) visit(target, [...chain, name]);
  };
  const builtin = new Set<string>();
  for (const raw of wanted) {
    const name = moduleName(raw);
    if (!files.has(name) && builtinNames.has(name)) builtin.add(name);
    else visit(name, []);
  }

  const hardClosure = (name: string, into: string[] = []): string[] => {
    for (const need of infoOf(name).depends.map(moduleName)) {
      if (into.includes(need)) continue;
      hardClosure(need, into);
      into.push(need);
    }
    return into;
  };
  const modulesDep = ordered
    .map((name) => {
      // depmod lists dependencies so that modprobe, loading from the end, meets each one's own first.
      const needs = hardClosure(name)
        .reverse()
        .map((need) => files.get(need) as string);
      return `${files.get(name)}:${needs.map((need) => ` ${need}`).join('')}\n`;
    })
    .join('');
  return {
    files: ordered.map((name) => files.get(name) as string),
    builtin: [...builtin].sort(),
    modulesDep,
  };
}

/** Module name → path relative to the modules root, from modules.order or a walk of kernel/. */
function listModuleFiles(modulesRoot: string): Map<string, string> {
  const orderPath = join(modulesRoot, 'modules.order');
  let relativePaths: string[];
  if (existsSync(orderPath)) {
    relativePaths = readFileSync(orderPath, 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean);
  } else if (isDirectory(join(modulesRoot, 'kernel'))) {
    relativePaths = (readdirSync(join(modulesRoot, 'kernel'), { recursive: true }) as string[])
      .filter((path) => /\.ko(\.(xz|zst|gz))?$/.test(path))
      .map((path) => `kernel/${path}`);
  } else {
    throw new BoardfleetError(
      'kernel-modules-missing',
      `${modulesRoot} has neither modules.order nor kernel/: is it the lib/modules/<version> directory of an extracted kernel package?`,
    );
  }
  return new Map(relativePaths.map((path) => [moduleName(path), path]));
}

function readBuiltin(modulesRoot: string): Set<string> {
  const path = join(modulesRoot, 'modules.builtin');
  if (!existsSync(path)) return new Set();
  return new Set(
    readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map(moduleName),
  );
}

/** Reads the `.modinfo` section of a kernel module (ELF, either class and byte order). */
export function readModuleInfo(path: string): ModuleInfo {
  if (!path.endsWith('.ko')) {
    throw new BoardfleetError(
      'kernel-module-compressed',
      `${path} is compressed; only plain .ko modules can be read (Debian bookworm ships them plain)`,
    );
  }
  const fd = openSync(path, 'r');
  try {
    const read = (position: number, length: number) => {
      const buffer = Buffer.alloc(length);
      const got = readSync(fd, buffer, 0, length, position);
      if (got !== length) throw new BoardfleetError('kernel-module-invalid', `${path} is truncated`);
      return buffer;
    };
    const ident = read(0, 64);
    if (ident.readUInt32BE(0) !== 0x7f454c46)
      throw new BoardfleetError('kernel-module-invalid', `${path} is not an ELF file`);
    const is64 = ident[4] === 2;
    const little = ident[5] === 1;
    const u16 = (buffer: Buffer, at: number) => (little ? buffer.readUInt16LE(at) : buffer.readUInt16BE(at));
    const u32 = (buffer: Buffer, at: number) => (little ? buffer.readUInt32LE(at) : buffer.readUInt32BE(at));
    const word = (buffer: Buffer, at: number) =>
      is64 ? Number(little ? buffer.readBigUInt64LE(at) : buffer.readBigUInt64BE(at)) : u32(buffer, at);
    const sectionTable = word(ident, is64 ? 0x28 : 0x20);
    const entrySize = u16(ident, is64 ? 0x3a : 0x2e);
    const count = u16(ident, is64 ? 0x3c : 0x30);
    const namesIndex = u16(ident, is64 ? 0x3e : 0x32);
    const table = read(sectionTable, entrySize * count);
    const section = (index: number) => ({
      name: u32(table, index * entrySize),
      offset: word(table, index * entrySize + (is64 ? 0x18 : 0x10)),
      size: word(table, index * entrySize + (is64 ? 0x20 : 0x14)),
    });
    const names = section(namesIndex);
    const nameTable = read(names.offset, names.size);
    for (let index = 0; index < count; index++) {
      const candidate = section(index);
      const end = nameTable.indexOf(0, candidate.name);
      if (nameTable.toString('latin1', candidate.name, end) !== '.modinfo') continue;
      return parseModinfo(read(candidate.offset, candidate.size).toString('utf8'));
    }
    throw new BoardfleetError('kernel-module-invalid', `${path} has no .modinfo section`);
  } finally {
    closeSync(fd);
  }
}

function parseModinfo(text: string): ModuleInfo {
  const info: ModuleInfo = { depends: [], pre: [], post: [], aliases: [] };
  for (const field of text.split('\0')) {
    const equals = field.indexOf('=');
    if (equals < 0) continue;
    const key = field.slice(0, equals);
    const value = field.slice(equals + 1);
    if (key === 'depends') info.depends.push(...value.split(',').filter(Boolean));
    else if (key === 'alias') info.aliases.push(value);
    else if (key === 'softdep') {
      // "pre: a b post: c"
      let list: string[] | undefined;
      for (const token of value.split(/\s+/).filter(Boolean)) {
        if (token === 'pre:') list = info.pre;
        else if (token === 'post:') list = info.post;
        else list?.push(token);
      }
    }
  }
  return info;
}

function unknownModule(
  name: string,
  chain: string[],
  modulesRoot: string,
  known: Iterable<string>,
): BoardfleetError {
  const near = [...known].filter((candidate) => candidate.includes(name) || name.includes(candidate)).sort();
  const hint = near.length > 0 ? ` (similar: ${near.slice(0, 8).join(', ')})` : '';
  const via = chain.length > 0 ? `, needed by ${chain.join(' → ')},` : '';
  return new BoardfleetError(
    'kernel-module-unknown',
    `the kernel module ${name}${via} is neither a module in ${modulesRoot} nor built in${hint}`,
  );
}

/** Where an extracted linux-image package keeps its kernel, modules and device trees. */
export interface KernelLayout {
  /** `6.1.0-50-arm64`. */
  version: string;
  /** Relative to the extracted root: `boot/vmlinuz-<version>`. */
  kernel: string;
  /** How `kernel` is packed: Debian bookworm's arm64 vmlinuz is a plain Image; other kernels gzip it. */
  kernelCompression: 'gzip' | 'none';
  /** `lib/modules/<version>` (or `usr/lib/modules/<version>` in merged-/usr packages). */
  modulesDir: string;
  /** `usr/lib/linux-image-<version>` holding `broadcom/*.dtb` and friends, when the package ships one. */
  dtbDir: string | undefined;
}

/** Finds the kernel image, modules and device-tree directory in an extracted linux-image package. */
export function kernelVersionOf(extractedDir: string): KernelLayout {
  const bootDir = join(extractedDir, 'boot');
  const kernels = existsSync(bootDir)
    ? readdirSync(bootDir)
        .filter((name) => name.startsWith('vmlinuz-'))
        .sort()
    : [];
  if (kernels.length !== 1) {
    throw new BoardfleetError(
      'kernel-not-found',
      kernels.length === 0
        ? `no boot/vmlinuz-<version> in ${extractedDir}: extract a linux-image-<version> package there (the linux-image-arm64 metapackage only depends on one)`
        : `${extractedDir} holds several kernels (${kernels.join(', ')}): extract one linux-image package per directory`,
    );
  }
  const kernel = kernels[0] as string;
  const version = kernel.slice('vmlinuz-'.length);
  const modulesDir = [`lib/modules/${version}`, `usr/lib/modules/${version}`].find((candidate) =>
    isDirectory(join(extractedDir, candidate)),
  );
  if (!modulesDir) {
    throw new BoardfleetError(
      'kernel-modules-missing',
      `${extractedDir} has boot/${kernel} but no lib/modules/${version}: the package looks incomplete`,
    );
  }
  const dtbDir = `usr/lib/linux-image-${version}`;
  return {
    version,
    kernel: `boot/${kernel}`,
    kernelCompression: startsWithGzipMagic(join(bootDir, kernel)) ? 'gzip' : 'none',
    modulesDir,
    dtbDir: isDirectory(join(extractedDir, dtbDir)) ? dtbDir : undefined,
  };
}

function isDirectory(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory();
}

function startsWithGzipMagic(path: string): boolean {
  const header = Buffer.alloc(2);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, header, 0, 2, 0);
  } finally {
    closeSync(fd);
  }
  return header[0] === 0x1f && header[1] === 0x8b;
}
