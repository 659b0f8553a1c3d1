import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ExpectedBlob } from './blob-store.ts';

/** Stored blobs: the server writes them, its group (a backup job, a web server) may read them. */
export const BLOB_FILE_MODE = 0o640;
/** The store's folders, like the data dir they live in. */
export const BLOB_DIRECTORY_MODE = 0o700;

/**
 * An upload file untouched this long has no live writer, on whichever host: a live one writes as
 * the body arrives, and Node's HTTP server gives up on a request after 5 minutes.
 */
export const ABANDONED_AFTER_MS = 60 * 60 * 1000;

/** Upload files are named `<pid>@<host>~<random>`, so a replica can tell whose they are. */
const UPLOAD_NAME = /^(\d+)@(.+)~[0-9a-f]+$/;

export interface UploadFile {
  name: string;
  modifiedAt: number;
}

export interface Surroundings {
  host: string;
  now: number;
  isRunning(pid: number): boolean;
}

/**
 * Whether an upload file in the shared incoming folder has no live writer: written by a process
 * of this host that has gone, or untouched for an hour (another host's process, whose pid means
 * nothing here, or a pid reused since). Other replicas' uploads in progress are neither.
 */
export function isAbandoned(file: UploadFile, here: Surroundings): boolean {
  if (here.now - file.modifiedAt >= ABANDONED_AFTER_MS) return true;
  const owner = UPLOAD_NAME.exec(file.name);
  return owner !== null && owner[2] === here.host && !here.isRunning(Number(owner[1]));
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The folder where uploads are received and verified before a store keeps them. Several
 * replicas may share it: each names its files after itself and removes only abandoned ones.
 */
export class IncomingFolder {
  constructor(private readonly directory: string) {
    mkdirSync(directory, { recursive: true, mode: BLOB_DIRECTORY_MODE });
    this.removeAbandoned();
  }

  /**
   * Streams `body` into a new file while hashing it, checks the sha256 and size against
   * `expected`, and hands the verified file to `keep` (which may move it). The file is gone
   * afterwards, whatever happened.
   */
  async receive<T>(body: Readable, expected: ExpectedBlob, keep: (path: string) => Promise<T>): Promise<T> {
    // Uploads are rare and the folder small: each one also clears what crashed writers left.
    this.removeAbandoned();
    const path = this.newPath();
    const hash = createHash('sha256');
    let size = 0;
    // A body that fails while the file opens must not be an uncaught error: the loop below sees it.
    body.on('error', () => undefined);
    const file = await open(path, 'wx', BLOB_FILE_MODE);
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > expected.size) {
          throw new BoardfleetError(
            'invalid-request',
            `the upload is larger than the declared ${expected.size} bytes`,
          );
        }
        hash.update(chunk);
        await file.write(chunk);
      }
      // Exactly this mode, whatever the process umask is.
      await file.chmod(BLOB_FILE_MODE);
      await file.sync();
      await file.close();
      if (size !== expected.size) {
        throw new BoardfleetError(
          'invalid-request',
          `the upload has ${size} bytes, not the declared ${expected.size}`,
        );
      }
      const actual = hash.digest('hex');
      if (actual !== expected.sha256) {
        throw new BoardfleetError(
          'invalid-request',
          `the upload's sha256 is ${actual}, not the declared ${expected.sha256}`,
        );
      }
      return await keep(path);
    } finally {
      await file.close().catch(() => undefined);
      await rm(path, { force: true });
    }
  }

  /**
   * As {@link receive}, for a small blob already in memory (a chunk): checked before it is
   * written. The thousands of chunks of one artifact leave clearing the folder to the uploads.
   */
  async receiveBytes<T>(bytes: Buffer, sha256: string, keep: (path: string) => Promise<T>): Promise<T> {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256)
      throw new BoardfleetError(
        'invalid-request',
        `the blob's sha256 is ${actual}, not the declared ${sha256}`,
      );
    const path = this.newPath();
    try {
      const file = await open(path, 'wx', BLOB_FILE_MODE);
      try {
        await file.writeFile(bytes);
        await file.chmod(BLOB_FILE_MODE);
        await file.sync();
      } finally {
        await file.close();
      }
      return await keep(path);
    } finally {
      await rm(path, { force: true });
    }
  }

  private newPath(): string {
    return join(this.directory, `${process.pid}@${hostname()}~${randomBytes(8).toString('hex')}`);
  }

  private removeAbandoned(): void {
    const here = { host: hostname(), now: Date.now(), isRunning };
    for (const name of readdirSync(this.directory)) {
      const path = join(this.directory, name);
      try {
        if (isAbandoned({ name, modifiedAt: statSync(path).mtimeMs }, here))
          rmSync(path, { recursive: true, force: true });
      } catch (error) {
        // Another replica removed or finished it meanwhile.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
  }
}
