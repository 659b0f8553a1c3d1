import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256File } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { BuiltFile } from './file-tree.ts';
import { checkEpoch, createSparseFile, walkTree } from './file-tree.ts';
import { ImageTools } from './image-tools.repository.ts';

export interface MakeExt4PartitionOptions {
  /** Whole MiB. */
  sizeBytes: number;
  /** Volume label, at most 16 bytes. */
  label: string;
  /** Filesystem UUID (also the directory hash seed), derived by the caller from its inputs. */
  uuid: string;
  /** Every inode time and the superblock times (seconds since 1970). */
  epoch: number;
  tools?: ImageTools;
}

const MIB = 1024 * 1024;

/**
 * mke2fs settings pinned here rather than read from the host's /etc/mke2fs.conf, whose
 * defaults change between releases and distributions (Debian's, for example, picks 1 KiB
 * blocks for small filesystems). The features are those every Pi kernel since 4.x mounts.
 */
const MKE2FS_CONFIG = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	boardfleet = {
		blocksize = 4096
		inode_size = 256
		inode_ratio = 16384
	}
`;

/**
 * Builds an ext4 partition image, empty or filled from `sourceDir` (mke2fs -d), that does not
 * depend on when or by whom it was built: fixed UUID and hash seed, E2FSPROGS_FAKE_TIME for
 * the superblock, inode tables and journal written out now (lazy init off) so the board's
 * kernel has no background zeroing to do on first mount. mke2fs -d copies each source file's
 * owner and times (ctime cannot even be set on the host), so a debugfs pass then sets every
 * inode to 0:0 and the epoch.
 */
export async function makeExt4Partition(
  sourceDir: string | null,
  outFile: string,
  options: MakeExt4PartitionOptions,
): Promise<BuiltFile> {
  checkEpoch(options.epoch);
  if (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes % MIB !== 0 || options.sizeBytes < MIB) {
    throw new BoardfleetError(
      'image-bad-layout',
      `an ext4 partition of ${options.sizeBytes} bytes: the size must be a whole number of MiB`,
    );
  }
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(options.uuid)) {
    throw new BoardfleetError(
      'image-bad-layout',
      `ext4 UUID "${options.uuid}" is not of the form 8-4-4-4-12 hex digits`,
    );
  }
  if (Buffer.byteLength(options.label) > 16 || /["\s]/.test(options.label) || options.label === '') {
    throw new BoardfleetError(
      'image-bad-layout',
      `ext4 label "${options.label}": 1 to 16 bytes, no spaces or quotes`,
    );
  }
  const entries = sourceDir === null ? [] : await walkTree(sourceDir);
  for (const entry of entries) {
    if (/["\n]/.test(entry.path)) {
      throw new BoardfleetError(
        'image-input-unsupported',
        `${join(sourceDir ?? '', entry.path)}: names with quotes or newlines are not supported in ext4 partitions`,
      );
    }
  }
  const tools = options.tools ?? new ImageTools();
  const scratch = await mkdtemp(join(tmpdir(), 'boardfleet-ext4-'));
  try {
    const configFile = join(scratch, 'mke2fs.conf');
    await writeFile(configFile, MKE2FS_CONFIG);
    const env = { MKE2FS_CONFIG: configFile, E2FSPROGS_FAKE_TIME: String(options.epoch) };
    await createSparseFile(outFile, options.sizeBytes);
    await tools.run(
      'mke2fs',
      [
        '-q',
        '-F',
        '-t',
        'ext4',
        '-T',
        'boardfleet',
        '-L',
        options.label,
        '-U',
        options.uuid,
        '-E',
        `hash_seed=${options.uuid},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard`,
        ...(sourceDir === null ? [] : ['-d', sourceDir]),
        outFile,
      ],
      { env },
    );
    const commandFile = join(scratch, 'normalise.debugfs');
    const paths = ['/', '/lost+found', ...entries.map((entry) => `/${entry.path}`)];
    await writeFile(commandFile, paths.map((path) => normaliseInode(path, options.epoch)).join(''));
    // debugfs exits 0 even when a command fails; anything on stderr but its banner is a failure.
    const { stderr } = await tools.run('debugfs', ['-w', '-f', commandFile, outFile], { env });
    const problems = stderr.split('\n').filter((line) => line.trim() && !/^debugfs \d/.test(line));
    if (problems.length > 0) {
      throw new BoardfleetError(
        'tool-failed',
        `debugfs could not set owners and times in ${outFile}:\n${problems.join('\n')}`,
      );
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return { file: outFile, size: (await stat(outFile)).size, sha256: await sha256File(outFile) };
}

function normaliseInode(path: string, epoch: number): string {
  const fields: Array<[string, string]> = [
    ['uid', '0'],
    ['gid', '0'],
    ...['atime', 'ctime', 'mtime', 'crtime'].flatMap((time): Array<[string, string]> => [
      [time, `@${epoch}`],
      [`${time}_extra`, '0'],
    ]),
  ];
  return fields.map(([field, value]) => `set_inode_field "${path}" ${field} ${value}\n`).join('');
}
