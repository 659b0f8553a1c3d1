import { open, stat } from 'node:fs/promises';
import { sha256File } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { createSparseFile } from './file-tree.ts';
import { ImageTools } from './image-tools.repository.ts';
import type { DiskPartition } from './inspect-disk.ts';
import { readPartitionTable } from './inspect-disk.ts';

/** MBR partition type bytes: FAT with LBA addressing (what the Pi firmware looks for), and Linux. */
export const MBR_PARTITION_TYPE = { fat16: 0x0e, fat32: 0x0c, linux: 0x83 } as const;

export type DiskPartitionType = keyof typeof MBR_PARTITION_TYPE;

export interface DiskPartitionInput {
  /** A filesystem image no larger than `sizeBytes`; the rest of the partition stays zero. */
  file: string;
  /** Whole MiB, so every partition starts on a 1 MiB boundary. */
  sizeBytes: number;
  type: DiskPartitionType;
}

export interface MakeDiskImageOptions {
  out: string;
  /** The 32-bit MBR disk signature; PARTUUIDs are `<diskId hex>-0N`. */
  diskId: number;
  /** In partition order (1 to 4). */
  partitions: DiskPartitionInput[];
  tools?: ImageTools;
}

export interface DiskImage {
  file: string;
  sizeBytes: number;
  sha256: string;
  diskId: number;
  partitions: DiskPartition[];
}

const MIB = 1024 * 1024;
const SECTOR = 512;
/** The first partition starts 1 MiB in, like every current partitioning tool's default. */
export const FIRST_PARTITION_OFFSET = MIB;

/**
 * Where each partition will start: back to back from 1 MiB. Lets a caller know partition 1's
 * first sector (the FAT boot sector's "hidden sectors") before it builds the filesystems.
 */
export function planPartitions(
  sizes: number[],
): Array<{ number: number; startBytes: number; sizeBytes: number }> {
  let start = FIRST_PARTITION_OFFSET;
  return sizes.map((sizeBytes, index) => {
    const planned = { number: index + 1, startBytes: start, sizeBytes };
    start += sizeBytes;
    return planned;
  });
}

/**
 * Lays partition images out on an MBR disk image: sfdisk writes the table into a sparse file
 * (no loop device, no root), then each filesystem is copied to its offset with positional
 * writes, skipping all-zero runs so the image stays sparse. Partition 1 is marked bootable,
 * which the Pi firmware ignores and some PC tools like.
 */
export async function makeDiskImage(options: MakeDiskImageOptions): Promise<DiskImage> {
  const { out, diskId, partitions } = options;
  await checkLayout(options);
  const plan = planPartitions(partitions.map((partition) => partition.sizeBytes));
  const last = plan[plan.length - 1]!;
  const sizeBytes = last.startBytes + last.sizeBytes;
  if (sizeBytes / SECTOR > 0xffff_ffff) {
    throw new BoardfleetError(
      'image-bad-layout',
      `an MBR disk cannot address ${sizeBytes} bytes (2 TiB at most)`,
    );
  }
  await createSparseFile(out, sizeBytes);
  const tools = options.tools ?? new ImageTools();
  await tools.run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', '--wipe', 'never', out], {
    input: sfdiskScript(diskId, plan, partitions),
  });

  const table = await readPartitionTable(out);
  for (const planned of plan) {
    const written = table.partitions.find((candidate) => candidate.number === planned.number);
    if (written?.startBytes !== planned.startBytes || written.sizeBytes !== planned.sizeBytes) {
      throw new BoardfleetError(
        'image-bad-layout',
        `sfdisk placed partition ${planned.number} at ${written?.startBytes}+${written?.sizeBytes}, not ${planned.startBytes}+${planned.sizeBytes}`,
      );
    }
  }
  for (const [index, planned] of plan.entries()) {
    await copyInto(partitions[index]!.file, out, planned.startBytes);
  }
  return {
    file: out,
    sizeBytes,
    sha256: await sha256File(out),
    diskId: table.diskId,
    partitions: table.partitions,
  };
}

/** A disk id and 1 to 4 partitions of whole MiB, each file no bigger than its partition. */
async function checkLayout({ diskId, partitions }: MakeDiskImageOptions): Promise<void> {
  if (!Number.isInteger(diskId) || diskId <= 0 || diskId > 0xffff_ffff) {
    throw new BoardfleetError('image-bad-layout', `disk id ${diskId} is not a non-zero 32-bit number`);
  }
  if (partitions.length < 1 || partitions.length > 4) {
    throw new BoardfleetError(
      'image-bad-layout',
      `an MBR disk holds 1 to 4 primary partitions, not ${partitions.length}`,
    );
  }
  for (const [index, partition] of partitions.entries()) {
    if (
      !Number.isSafeInteger(partition.sizeBytes) ||
      partition.sizeBytes <= 0 ||
      partition.sizeBytes % MIB !== 0
    ) {
      throw new BoardfleetError(
        'image-bad-layout',
        `partition ${index + 1} (${partition.file}): size ${partition.sizeBytes} is not a whole number of MiB`,
      );
    }
    const actual = (await stat(partition.file)).size;
    if (actual > partition.sizeBytes) {
      throw new BoardfleetError(
        'image-bad-layout',
        `partition ${index + 1}: ${partition.file} is ${actual} bytes, more than the ${partition.sizeBytes} bytes planned for it`,
      );
    }
  }
}

/** The partition table as an sfdisk script: an MBR with these partitions, the first bootable. */
function sfdiskScript(
  diskId: number,
  plan: ReturnType<typeof planPartitions>,
  partitions: MakeDiskImageOptions['partitions'],
): string {
  const lines = plan.map(({ number, startBytes }, index) => {
    const partition = partitions[index]!;
    const type = MBR_PARTITION_TYPE[partition.type].toString(16);
    const size = partition.sizeBytes / SECTOR;
    return `start=${startBytes / SECTOR}, size=${size}, type=${type}${number === 1 ? ', bootable' : ''}`;
  });
  return [
    'label: dos',
    `label-id: 0x${diskId.toString(16).padStart(8, '0')}`,
    'unit: sectors',
    'sector-size: 512',
    '',
    ...lines,
    '',
  ].join('\n');
}

const CHUNK = MIB;

/** Copies `source` into `target` at `offset`, leaving holes where the source is all zeros. */
async function copyInto(source: string, target: string, offset: number): Promise<void> {
  const input = await open(source, 'r');
  const output = await open(target, 'r+');
  const buffer = Buffer.alloc(CHUNK);
  const zeros = Buffer.alloc(CHUNK);
  try {
    for (let position = 0; ; position += CHUNK) {
      const { bytesRead } = await input.read(buffer, 0, CHUNK, position);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      if (!chunk.equals(zeros.subarray(0, bytesRead)))
        await output.write(chunk, 0, bytesRead, offset + position);
    }
  } finally {
    await input.close();
    await output.close();
  }
}
