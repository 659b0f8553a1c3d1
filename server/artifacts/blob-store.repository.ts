import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { BoardfleetError } from '../../protocol/errors.ts';

/** Stored blobs: the server writes them, its group (a backup job, a web server) may read them. */
const BLOB_FILE_MODE = 0o640;

/**
 * Content-addressed files under `<data dir>/artifacts/sha256/ab/abcdef…`. A write streams to a
 * temporary file while hashing, and is renamed into place only when the sha256 and size match
 * what the uploader declared; the same content is stored once.
 */
export class BlobStoreRepository {
  private readonly root: string;
  private readonly incoming: string;

  constructor(dataDir: string) {
    this.root = join(dataDir, 'artifacts', 'sha256');
    this.incoming = join(dataDir, 'artifacts', 'incoming');
    mkdirSync(this.root, { recursive: true });
    // Whatever is here belongs to an upload the last run did not finish (it was killed mid-way).
    rmSync(this.incoming, { recursive: true, force: true });
    mkdirSync(this.incoming, { recursive: true });
  }

  pathOf(sha256: string): string {
    return join(this.root, sha256.slice(0, 2), sha256);
  }

  has(sha256: string): boolean {
    return existsSync(this.pathOf(sha256));
  }

  sizeOf(sha256: string): number {
    return statSync(this.pathOf(sha256)).size;
  }

  async write(body: Readable, expected: { sha256: string; size: number }): Promise<{ stored: boolean }> {
    const temporary = join(this.incoming, `${Date.now()}-${randomBytes(6).toString('hex')}`);
    const hash = createHash('sha256');
    let size = 0;
    const file = await open(temporary, 'wx', BLOB_FILE_MODE);
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
      if (this.has(actual)) return { stored: false };
      mkdirSync(join(this.root, actual.slice(0, 2)), { recursive: true });
      renameSync(temporary, this.pathOf(actual));
      return { stored: true };
    } finally {
      await file.close().catch(() => undefined);
      rmSync(temporary, { force: true });
    }
  }
}
