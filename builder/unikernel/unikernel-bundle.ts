import { createReadStream } from 'node:fs';
import { open, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { VmBoard } from '../../boards/board-catalogue.ts';
import {
  BUNDLE_FILES,
  type LaunchSpec,
  launchSpecSchema,
  type VmArchitecture,
} from '../../protocol/unikernel-image.ts';
import { tarHeader } from '../disk/update-payload.ts';
import type { UnikernelRecipe } from '../recipe/unikernel-recipe.ts';
import { PRE_INIT_PATH } from './assemble-unikernel-initramfs.ts';

const VM_ARCHITECTURE: Record<VmBoard['architecture'], VmArchitecture> = { amd64: 'x86_64', arm64: 'arm64' };

/** The kernel command line: the console, the pre-init as the first program, and the recipe's own words. */
function unikernelCmdline(recipe: UnikernelRecipe, board: VmBoard): string {
  return [
    `console=${board.console.device}`,
    // A crashed application ends the VM at once (with -no-reboot) instead of a hung panic screen.
    'panic=-1',
    `rdinit=${PRE_INIT_PATH}`,
    'quiet',
    ...recipe.kernel.cmdline,
  ].join(' ');
}

/** How to start the VM (qemu reads it through run-image and the agent): from the recipe, checked. */
export function launchSpecFor(
  recipe: UnikernelRecipe,
  board: VmBoard,
  sizes: LaunchSpec['sizes'],
): LaunchSpec {
  return launchSpecSchema.parse({
    schemaVersion: 1,
    name: recipe.name,
    version: recipe.version,
    architecture: VM_ARCHITECTURE[board.architecture],
    cmdline: unikernelCmdline(recipe, board),
    memoryMiB: recipe.memoryMiB,
    cpus: recipe.cpus,
    network: recipe.network,
    ports: recipe.ports,
    ...(recipe.readiness ? { readiness: recipe.readiness } : {}),
    stop: recipe.stop === 'signal' ? 'ctrl-alt-del' : 'kill',
    sizes,
  } satisfies LaunchSpec);
}

/**
 * Firecracker's configuration file (`firecracker --config-file firecracker.json`), next to the
 * kernel and initramfs of the bundle. Firecracker's devices are virtio-mmio, announced on the
 * command line it builds; its network needs a tap device named by the host.
 */
export function firecrackerConfig(spec: LaunchSpec): Record<string, unknown> {
  return {
    'boot-source': {
      kernel_image_path: BUNDLE_FILES.kernel,
      initrd_path: BUNDLE_FILES.initramfs,
      boot_args: `${spec.cmdline} reboot=k pci=off`,
    },
    'machine-config': { vcpu_count: spec.cpus, mem_size_mib: spec.memoryMiB },
    drives: [],
    'network-interfaces': spec.network.mode === 'none' ? [] : [{ iface_id: 'eth0', host_dev_name: 'tap0' }],
  };
}

/**
 * Writes the bundle's files into `directory`: launch.json and firecracker.json beside the kernel
 * and the initramfs already there, then the bundle tar of the four, in that order.
 */
export async function writeUnikernelBundle(
  directory: string,
  parts: { spec: LaunchSpec; kernel: string; initramfs: string; bundleName: string; epoch: number },
): Promise<void> {
  const specFile = join(directory, BUNDLE_FILES.launchSpec);
  const firecrackerFile = join(directory, BUNDLE_FILES.firecracker);
  await writeFile(specFile, `${JSON.stringify(parts.spec, null, 2)}\n`);
  await writeFile(firecrackerFile, `${JSON.stringify(firecrackerConfig(parts.spec), null, 2)}\n`);
  await writeFlatTar(
    join(directory, parts.bundleName),
    [
      { name: BUNDLE_FILES.launchSpec, path: specFile },
      { name: BUNDLE_FILES.kernel, path: parts.kernel },
      { name: BUNDLE_FILES.initramfs, path: parts.initramfs },
      { name: BUNDLE_FILES.firecracker, path: firecrackerFile },
    ],
    parts.epoch,
  );
}

/** A plain ustar archive of files in the given order, owned by 0:0, every mtime the epoch. */
async function writeFlatTar(
  out: string,
  entries: Array<{ name: string; path: string }>,
  epoch: number,
): Promise<void> {
  const handle = await open(out, 'w');
  try {
    for (const entry of entries) {
      const size = (await stat(entry.path)).size;
      await handle.write(tarHeader({ name: entry.name, type: 'file', size, mtime: epoch }));
      for await (const chunk of createReadStream(entry.path, { highWaterMark: 1 << 20 })) {
        await handle.write(chunk as Buffer);
      }
      const pad = (512 - (size % 512)) % 512;
      if (pad > 0) await handle.write(Buffer.alloc(pad));
    }
    // Two zero blocks end a tar archive.
    await handle.write(Buffer.alloc(1024));
    await handle.sync();
  } finally {
    await handle.close();
  }
}
