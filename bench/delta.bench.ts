// `npm run bench -- delta`: what a delta update fetches, for three changes to pi-minimal (one file
// in the root, one more package, a newer kernel), an app bundle with one dependency changed and
// the http-hello unikernel with its kernel command line changed. Per case: the bytes Boardfleet's
// protocol moves (index delta + brotli chunk answers, computed as server and agent do), the bytes
// casync moves (Debian's casync, default chunk sizes, the same two files), a zstd --patch-from
// delta (a binary floor) and the whole artifact, all measured in this run; and the device-side
// time to assemble the new version from the old one. Goal (issue 17): a one-file change fetches
// at most 0.3 % of the full payload, and no case fetches more than casync.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultCacheDir } from '../builder/steps/cached-step.ts';
import { BoardfleetError } from '../protocol/errors.ts';
import { BenchUsageError } from './bench-args.ts';
import {
  buildAppBundlePairs,
  buildImagePairs,
  buildUnikernelPair,
  type VersionPair,
} from './delta-inputs.ts';
import {
  assembleLocally,
  boardfleetTransfer,
  casyncTransfer,
  type ChunkedFile,
  chunkIndexOf,
  requirePeerTools,
  zstdPatchBytes,
} from './delta-measure.ts';

/** Issue 17: a one-file change of pi-minimal fetches at most this share of the full payload. */
const ONE_FILE_GOAL_PERCENT = 0.3;

interface CaseResult {
  label: string;
  boardfleet: number;
  casync: number;
  zstd: number;
  full: number;
  assembleSeconds: number;
  casyncExtractSeconds: number;
}

export async function run(args: string[]): Promise<void> {
  if (args.length > 0) throw new BenchUsageError(`takes no flags, not ${args.join(' ')}`);
  try {
    await requirePeerTools();
  } catch (error) {
    // A missing casync or zstd: one line naming the Debian package to install.
    if (error instanceof BoardfleetError) throw new BenchUsageError(error.message);
    throw error;
  }
  const cacheDir = defaultCacheDir();
  const work = mkdtempSync(join(tmpdir(), 'delta-bench-'));
  try {
    const say = (line: string) => process.stderr.write(`${line}\n`);
    say('building pi-minimal and its three changes for rpi-4b (cached after the first run)…');
    const images = await buildImagePairs(cacheDir);
    say('building http-hello twice for vm-x86_64…');
    const unikernel = await buildUnikernelPair(cacheDir);
    say('packing the app bundles…');
    const apps = await buildAppBundlePairs(work);
    const cases: Array<[string, VersionPair]> = [
      ['one-file change', images.oneFile],
      ['changed package', images.changedPackage],
      ['new kernel', images.newKernel],
      ['app bundle, one dependency', apps.gzip],
      ['app bundle, one dependency, gzip --rsyncable', apps.rsyncable],
      ['unikernel, kernel command line', unikernel],
    ];
    process.stdout.write(
      [
        'delta benchmark: bytes fetched to go from one version to the next, and the device-side time to assemble it',
        'baseline, measured in this run on the same two files: the full artifact; casync (Debian casync, default',
        'chunk sizes: `casync make` both into one store, new .cacnk files + the .caibx); zstd -19 --long --patch-from',
        '(a binary delta floor). Boardfleet: index delta + the chunks the old version lacks, brotli 5, ≤ 1024 a request.',
        'assemble: the device side in this process, the old version as the seed (chunked, its chunks re-hashed as copied,',
        "the fetched ones taken from the answers, the result's sha256 checked); casync extract --seed from a local store.",
        ...cases.map(([label, pair]) => `  ${label}: ${pair.change}`),
        '',
        '',
      ].join('\n'),
    );
    const indexes = new Map<string, Promise<ChunkedFile>>();
    const indexOf = (path: string) => {
      if (!indexes.has(path)) indexes.set(path, chunkIndexOf(path));
      return indexes.get(path)!;
    };
    const results: CaseResult[] = [];
    for (const [label, pair] of cases) {
      const [previous, next] = [await indexOf(pair.previous), await indexOf(pair.next)];
      const transfer = await boardfleetTransfer(previous, next);
      const assembleSeconds = await assembleLocally(pair.previous, next, transfer, join(work, 'assembled'));
      rmSync(join(work, 'assembled'), { force: true });
      const casync = await casyncTransfer(pair.previous, pair.next, join(work, 'casync'));
      const zstd = await zstdPatchBytes(pair.previous, pair.next, join(work, 'patch.zst'));
      const result: CaseResult = {
        label,
        boardfleet: transfer.bytes,
        casync: casync.bytes,
        zstd,
        full: next.size,
        assembleSeconds,
        casyncExtractSeconds: casync.extractSeconds,
      };
      results.push(result);
      process.stdout.write(`${describe(result)}\n`);
    }
    process.stdout.write(`\n${verdict(results)}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function describe(result: CaseResult): string {
  return (
    `${result.label}: ${percentOf(result.boardfleet, result.full)} of the full payload — boardfleet ${size(result.boardfleet)}, ` +
    `casync ${size(result.casync)}, zstd --patch-from ${size(result.zstd)}, full ${size(result.full)}; ` +
    `assemble ${result.assembleSeconds.toFixed(1)} s (casync extract --seed ${result.casyncExtractSeconds.toFixed(1)} s)`
  );
}

function verdict(results: CaseResult[]): string {
  const aboveCasync = results.filter((result) => result.boardfleet > result.casync);
  const oneFile = results.find((result) => result.label === 'one-file change')!;
  const oneFilePercent = (100 * oneFile.boardfleet) / oneFile.full;
  return [
    aboveCasync.length === 0
      ? 'every case at or below casync: yes'
      : `every case at or below casync: NO (${aboveCasync.map((result) => result.label).join('; ')})`,
    `one-file change ≤ ${ONE_FILE_GOAL_PERCENT} %: ${oneFilePercent <= ONE_FILE_GOAL_PERCENT ? 'yes' : 'NO'} (${percentOf(oneFile.boardfleet, oneFile.full)})`,
  ].join('; ');
}

function percentOf(part: number, whole: number): string {
  const percent = (100 * part) / whole;
  return `${percent < 1 ? percent.toFixed(3) : percent.toFixed(1)} %`;
}

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
