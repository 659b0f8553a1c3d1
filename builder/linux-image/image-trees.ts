import { join } from 'node:path';
import type { SlotDevices } from '../../protocol/linux-ab-layout.ts';
import type { ArchivePackage, ResolvedPackage } from '../debian/debian-archive.repository.ts';
import { type KernelLayout, kernelVersionOf, moduleClosure } from '../debian/kernel-modules.ts';
import { writeCpioNewc } from '../disk/cpio-newc.ts';
import { makeSquashfs } from '../disk/squashfs.ts';
import { cachedStep } from '../steps/cached-step.ts';
import type { AgentRuntime, ImageBuild } from './image-inputs.ts';
import { type SlotBootFiles, cmdlineTemplate } from './rootfs/assemble-boot-files.ts';
import { assembleInitramfs } from './rootfs/assemble-initramfs.ts';
import { assembleRootfs, perVersionFiles } from './rootfs/assemble-rootfs.ts';

/**
 * The time on what no device reads times from (the initramfs, unpacked into memory at boot, and
 * the update payload's tar entries) instead of the build's epoch. With the epoch, a rebuild of
 * the same content under a new SOURCE_DATE_EPOCH (a CI build per commit, a Debian point release)
 * changed every byte of the compressed initramfs and every tar header, and each device fetched
 * them again: 2 MB of pi-minimal's 70 MB payload, against 48 KB with this (see bench/delta).
 */
export const UNREAD_TIME = 315_532_800; // 1980-01-01, the earliest time a build may carry

/** An unpacked kernel package: where it is and where its kernel, modules and device trees are in it. */
export interface KernelTree {
  root: string;
  layout: KernelLayout;
}

/**
 * A package unpacked into the archive's cache, by its sha256: the 350 MB kernel is unpacked once
 * per machine, and every build reads it there.
 */
export async function unpacked(build: ImageBuild, pkg: ResolvedPackage | ArchivePackage): Promise<string> {
  return (await build.archive.unpack(pkg, { signal: build.reporter.signal })).root;
}

/** The root filesystem of a slot as a squashfs, cached under `key`. */
export function makeRootfs(
  build: ImageBuild,
  packages: ResolvedPackage[],
  runtime: AgentRuntime,
  key: string,
): Promise<string> {
  const { board, recipe, reporter } = build;
  return cachedStep(build.stepsDir, `rootfs-${key}.squashfs`, build.reused, async (out) => {
    reporter.progress('assembling the root filesystem', 45);
    const packageTrees = [];
    for (const pkg of packages) packageTrees.push({ name: pkg.name, root: await unpacked(build, pkg) });
    const tree = join(build.work, 'rootfs');
    const assembled = await assembleRootfs({
      dir: tree,
      board,
      recipe,
      packageTrees,
      nodeBinary: runtime.node?.binary ?? null,
      agentBundle: runtime.agent?.file ?? null,
      rebootHelper: runtime.rebootHelper,
      slotDevices: board.partitions as SlotDevices,
    });
    reporter.log(
      `root: ${assembled.libraries.length} libraries, ${assembled.applets.length} busybox applets`,
    );
    reporter.progress('making the squashfs root', 55);
    await makeSquashfs(tree, out, {
      epoch: build.epoch,
      compression: recipe.squashfs.compression,
      lastFiles: perVersionFiles(recipe).map((path) => path.slice(1)),
    });
  });
}

export async function unpackKernel(build: ImageBuild, kernel: ResolvedPackage): Promise<KernelTree> {
  const root = await unpacked(build, kernel);
  return { root, layout: kernelVersionOf(root) };
}

/** The initramfs (a cpio archive): busybox, the board's modules and the init that mounts a slot; cached under `key`. */
export function makeInitramfs(
  build: ImageBuild,
  kernel: KernelTree,
  busybox: ResolvedPackage,
  key: string,
): Promise<string> {
  const { board, reporter } = build;
  return cachedStep(build.stepsDir, `initramfs-${key}.img`, build.reused, async (out) => {
    reporter.progress('assembling the initramfs', 65);
    const modulesRoot = join(kernel.root, kernel.layout.modulesDir);
    const closure = moduleClosure(modulesRoot, board.kernel.modules);
    reporter.log(
      `initramfs modules: ${closure.files.length} files; built in: ${closure.builtin.join(', ') || '-'}`,
    );
    const tree = join(build.work, 'initramfs');
    await assembleInitramfs({
      dir: tree,
      board,
      busyboxStatic: join(await unpacked(build, busybox), 'bin', 'busybox'),
      modulesRoot,
      moduleFiles: closure.files,
    });
    await writeCpioNewc(tree, out, { epoch: UNREAD_TIME });
  });
}

/** What one slot boots: the kernel, the initramfs, the board's device trees and its command line. */
export function slotBootFiles(build: ImageBuild, kernel: KernelTree, initramfs: string): SlotBootFiles {
  return {
    kernel: join(kernel.root, kernel.layout.kernel),
    initramfs,
    dtbs: build.board.kernel.deviceTrees.map((tree) =>
      join(kernel.root, kernel.layout.dtbDir ?? 'usr/lib', tree),
    ),
    cmdline: cmdlineTemplate(build.board, build.recipe),
  };
}
