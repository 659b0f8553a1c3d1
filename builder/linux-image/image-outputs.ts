import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { compressImage } from '../disk/compress-image.ts';
import { FIRST_PARTITION_OFFSET, makeDiskImage } from '../disk/disk-image.ts';
import { makeExt4Partition } from '../disk/ext4-partition.ts';
import { makeFatPartition } from '../disk/fat-partition.ts';
import { describeUpdatePayload, writeUpdatePayload } from '../disk/update-payload.ts';
import { debianComponent } from '../debian/build-archive.ts';
import { packageVersion } from '../steps/input-hash.ts';
import { bundleComponents, imageSbomHeader, nodeRuntimeComponent, writeSbom } from '../steps/sbom.ts';
import type { AgentRuntime, ImageBuild, ImagePackages } from './image-inputs.ts';
import { UNREAD_TIME, unpacked } from './image-trees.ts';
import { assembleBootFiles, assembleSlotFiles, type SlotBootFiles } from './rootfs/assemble-boot-files.ts';

const MIB = 1024 * 1024;

/** The finished files of an image build, in a folder named by its inputs' hash. */
export interface ImageOutputs {
  directory: string;
  diskImage: string;
  diskImageCompressed: string;
  updatePayload: string;
  sbom: string;
}

export function imageOutputs(build: ImageBuild, inputsHash: string): ImageOutputs {
  const directory = join(build.stepsDir, `image-${inputsHash}`);
  const baseName = `${build.recipe.name}-${build.recipe.version}-${build.board.id}`;
  const diskImage = join(directory, `${baseName}.img`);
  return {
    directory,
    diskImage,
    diskImageCompressed: `${diskImage}.zst`,
    updatePayload: join(directory, `${baseName}.payload.tar`),
    sbom: join(directory, `${baseName}.spdx.json`),
  };
}

/**
 * The SD card image: the boot FAT (firmware and slot A's boot files), slot A's root, an empty
 * slot B and the data partition; and its zstd copy, which is what is published.
 */
export async function writeDiskImage(
  build: ImageBuild,
  parts: { rootfs: string; slot: SlotBootFiles; firmware: ImagePackages['firmware']; inputsHash: string },
  out: { image: string; compressed: string },
): Promise<void> {
  const { board, recipe, reporter, work, epoch } = build;
  reporter.progress('assembling the boot partition', 72);
  const bootTree = join(work, 'boot');
  await assembleBootFiles({
    dir: bootTree,
    board,
    firmwareRoot: parts.firmware ? await unpacked(build, parts.firmware) : null,
    slots: { a: parts.slot },
    committedSlot: 'a',
  });
  const diskId = Number.parseInt(parts.inputsHash.slice(0, 8), 16) || 1;
  reporter.progress('making the boot, data and disk images', 78);
  const bootPartition = join(work, 'boot.fat');
  const fat = await makeFatPartition(bootTree, bootPartition, {
    sizeBytes: recipe.partitions.boot * MIB,
    label: 'BOOT',
    volumeId: diskId,
    epoch,
    hiddenSectors: FIRST_PARTITION_OFFSET / 512,
  });
  const dataPartition = join(work, 'data.ext4');
  await makeExt4Partition(null, dataPartition, {
    sizeBytes: recipe.partitions.data * MIB,
    label: 'data',
    uuid: uuidFrom(parts.inputsHash),
    epoch,
  });
  const emptySlot = join(work, 'empty-slot');
  await writeFile(emptySlot, '');
  const disk = await makeDiskImage({
    out: out.image,
    diskId,
    partitions: [
      {
        file: bootPartition,
        sizeBytes: recipe.partitions.boot * MIB,
        type: fat.fatBits === 32 ? 'fat32' : 'fat16',
      },
      { file: parts.rootfs, sizeBytes: recipe.partitions.root * MIB, type: 'linux' },
      // Slot B starts empty: the first update writes it.
      { file: emptySlot, sizeBytes: recipe.partitions.root * MIB, type: 'linux' },
      { file: dataPartition, sizeBytes: recipe.partitions.data * MIB, type: 'linux' },
    ],
  });
  reporter.log(`disk image ${disk.sizeBytes} bytes, sha256 ${disk.sha256}`);
  reporter.progress('compressing the disk image', 85);
  // zstd -10: a few seconds, 2 % bigger than xz -6, which takes minutes; Raspberry Pi Imager reads both.
  await compressImage(out.image, out.compressed, { format: 'zstd' });
}

/** What an update writes into the other slot: its root filesystem and its boot files. */
export async function writeImagePayload(
  build: ImageBuild,
  parts: { rootfs: string; slot: SlotBootFiles },
  out: string,
): Promise<void> {
  const { board, recipe } = build;
  build.reporter.progress('writing the update payload', 93);
  const bootDir = join(build.work, 'payload-boot');
  await assembleSlotFiles({ dir: bootDir, board, files: parts.slot, cmdline: parts.slot.cmdline });
  const manifest = await describeUpdatePayload({
    board: board.id,
    version: recipe.version,
    rootfsFile: parts.rootfs,
    bootDir,
  });
  await writeUpdatePayload({ out, manifest, rootfsFile: parts.rootfs, bootDir, epoch: UNREAD_TIME });
}

/** Every Debian package, the Node runtime and the agent bundle (with its npm packages), as SPDX. */
export async function writeImageSbom(
  build: ImageBuild,
  packages: ImagePackages,
  runtime: AgentRuntime,
  inputsHash: string,
  out: string,
): Promise<void> {
  const { archive, board } = build;
  build.reporter.progress('writing the SBOM', 96);
  await writeSbom(out, {
    ...imageSbomHeader(build, inputsHash),
    components: [
      ...packages.all.map((pkg) => debianComponent(pkg, archive.mirror, board.architecture)),
      ...(runtime.node ? [nodeRuntimeComponent(runtime.node)] : []),
      ...(runtime.agent
        ? bundleComponents({
            name: 'boardfleet-agent',
            version: packageVersion(),
            sha256: runtime.agent.sha256,
            supplier: 'Organization: Boardfleet',
            packages: runtime.agent.packages,
          })
        : []),
    ],
  });
}

/** A version-4-shaped UUID taken from the inputs' hash, so the data filesystem's UUID is reproducible. */
function uuidFrom(hash: string): string {
  return `${hash.slice(0, 8)}-${hash.slice(8, 12)}-4${hash.slice(13, 16)}-8${hash.slice(17, 20)}-${hash.slice(20, 32)}`;
}
