import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256 as sha256Of } from '../../lib/hash.ts';
import { FolderBlobStore } from './blob-store.repository.ts';
import { ABANDONED_AFTER_MS, isAbandoned } from './incoming-folder.ts';

const modeOf = (path: string) => statSync(path).mode & 0o777;
const dirs: string[] = [];
const newDataDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'boardfleet-blobs-'));
  dirs.push(dir);
  return dir;
};

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('the folder blob store', () => {
  it('keeps blobs at artifacts/sha256/ab/abcdef…, files 0640 and folders 0700 whatever the umask', async () => {
    const dataDir = newDataDir();
    const content = randomBytes(4096);
    const sha256 = sha256Of(content);
    const umask = process.umask(0o000);
    try {
      await new FolderBlobStore(dataDir).write(Readable.from([content]), { sha256, size: content.length });
    } finally {
      process.umask(umask);
    }
    const artifacts = join(dataDir, 'artifacts');
    expect(modeOf(join(artifacts, 'sha256', sha256.slice(0, 2), sha256))).toBe(0o640);
    for (const dir of ['', 'sha256', join('sha256', sha256.slice(0, 2)), 'incoming'])
      expect([dir, modeOf(join(artifacts, dir))]).toEqual([dir, 0o700]);
  });

  it('on start removes the upload files of gone processes and stale ones, and keeps live uploads', async () => {
    const dataDir = newDataDir();
    const incoming = join(dataDir, 'artifacts', 'incoming');
    mkdirSync(incoming, { recursive: true });
    const gone = spawn(process.execPath, ['-e', '']);
    await once(gone, 'exit');
    const host = hostname();
    const files = {
      goneHere: `${gone.pid}@${host}~aa`,
      liveHere: `${process.pid}@${host}~bb`,
      otherHost: `${gone.pid}@another-replica~cc`,
      otherHostStale: `${process.pid}@another-replica~dd`,
      olderRelease: '1733390000000-0123456789ab',
    };
    for (const name of Object.values(files)) writeFileSync(join(incoming, name), 'partial upload');
    const twoHoursAgo = (Date.now() - 2 * 60 * 60 * 1000) / 1000;
    utimesSync(join(incoming, files.otherHostStale), twoHoursAgo, twoHoursAgo);

    new FolderBlobStore(dataDir);

    expect(readdirSync(incoming).sort()).toEqual(
      [files.liveHere, files.otherHost, files.olderRelease].sort(),
    );
  });
});

describe('an abandoned upload file', () => {
  const here = { host: 'replica-a', now: 10 * ABANDONED_AFTER_MS, isRunning: (pid: number) => pid === 100 };
  const fresh = here.now - 1000;
  const stale = here.now - ABANDONED_AFTER_MS;

  it.each([
    ['a running process of this host', false, '100@replica-a~ab', fresh],
    ['a process of this host that has gone', true, '200@replica-a~ab', fresh],
    ["another host's process, written lately", false, '200@replica-b~ab', fresh],
    ["another host's process, untouched for an hour", true, '200@replica-b~ab', stale],
    [
      'a running process of this host, untouched for an hour (its pid reused)',
      true,
      '100@replica-a~ab',
      stale,
    ],
    ['an older release, written lately', false, '1733390000000-0123456789ab', fresh],
    ['an older release, untouched for an hour', true, '1733390000000-0123456789ab', stale],
  ])('written by %s: abandoned is %s', (_owner, abandoned, name, modifiedAt) => {
    expect(isAbandoned({ name, modifiedAt }, here)).toBe(abandoned);
  });
});
