import { mkdirSync } from 'node:fs';
import { mkdir, open, rename, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { type BlobRange, BlobStore, type ExpectedBlob, blobKey, missingBlob } from './blob-store.ts';
import { BLOB_DIRECTORY_MODE, IncomingFolder } from './incoming-folder.ts';

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';

/**
 * Blobs under `<data dir>/artifacts/sha256/ab/abcdef…`, a folder several replicas may share. An
 * upload is verified in `artifacts/incoming` and renamed into place, so a reader sees a whole
 * blob or none; two replicas storing the same content at once rename identical bytes over each
 * other.
 */
export class FolderBlobStore extends BlobStore {
  private readonly root: string;
  private readonly incoming: IncomingFolder;

  constructor(dataDir: string) {
    super();
    this.root = join(dataDir, 'artifacts');
    mkdirSync(join(this.root, 'sha256'), { recursive: true, mode: BLOB_DIRECTORY_MODE });
    this.incoming = new IncomingFolder(join(this.root, 'incoming'));
  }

  async size(sha256: string): Promise<number | null> {
    try {
      return (await stat(this.pathOf(sha256))).size;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  write(body: Readable, expected: ExpectedBlob): Promise<{ stored: boolean }> {
    return this.incoming.receive(body, expected, (verified) => this.keep(verified, expected.sha256));
  }

  override writeBytes(bytes: Buffer, sha256: string): Promise<{ stored: boolean }> {
    return this.incoming.receiveBytes(bytes, sha256, (verified) => this.keep(verified, sha256));
  }

  async read(sha256: string, range?: BlobRange): Promise<Readable> {
    // Opened first, so a missing blob is an error before any byte is answered.
    const file = await open(this.pathOf(sha256), 'r').catch((error: unknown) => {
      throw isMissing(error) ? missingBlob(sha256) : error;
    });
    return file.createReadStream(range ?? {});
  }

  /** Moves a verified file into place, unless the store holds that content already. */
  private async keep(verified: string, sha256: string): Promise<{ stored: boolean }> {
    const path = this.pathOf(sha256);
    if (await this.has(sha256)) return { stored: false };
    await mkdir(dirname(path), { recursive: true, mode: BLOB_DIRECTORY_MODE });
    await rename(verified, path);
    return { stored: true };
  }

  private pathOf(sha256: string): string {
    return join(this.root, blobKey(sha256));
  }
}
