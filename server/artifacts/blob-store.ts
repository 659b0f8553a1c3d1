import { Readable } from 'node:stream';
import { BoardfleetError } from '../../protocol/errors.ts';

/** Bytes `start` to `end` of a blob, both included, as an HTTP Range names them. */
export interface BlobRange {
  start: number;
  end: number;
}

/** What the uploader declared; the body is stored only if it matches. */
export interface ExpectedBlob {
  sha256: string;
  size: number;
}

/**
 * Artifact contents by sha256, where every server replica reads them: the shared data folder
 * (FolderBlobStore) or an S3-compatible bucket (S3BlobStore). The same content is stored once.
 */
export abstract class BlobStore {
  /** The blob's size in bytes, or null when the store does not hold it. */
  abstract size(sha256: string): Promise<number | null>;

  /**
   * Stores `body` under its sha256 once it has been read whole and found to have the declared
   * sha256 and size; refuses it (an `invalid-request` error) and keeps nothing otherwise.
   * `stored` is false when the store already held that content.
   */
  abstract write(body: Readable, expected: ExpectedBlob): Promise<{ stored: boolean }>;

  /**
   * Stores a small blob already in memory (a chunk of an artifact) as {@link write} would: a
   * store may do it with less ceremony than a stream needs.
   */
  writeBytes(bytes: Buffer, sha256: string): Promise<{ stored: boolean }> {
    return this.write(Readable.from([bytes]), { sha256, size: bytes.length });
  }

  /** The blob's bytes, or only `range` of them; a `not-found` error when the store does not hold it. */
  abstract read(sha256: string, range?: BlobRange): Promise<Readable>;

  async has(sha256: string): Promise<boolean> {
    return (await this.size(sha256)) !== null;
  }

  /** Lets go of connections; the folder store holds none. */
  async close(): Promise<void> {}
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Where a blob lives below the store's root: `sha256/ab/abcdef…`. Refuses anything but a
 * lower-case sha256, so no name can reach outside the store.
 */
export function blobKey(sha256: string): string {
  if (!SHA256_HEX.test(sha256)) {
    throw new BoardfleetError('invalid-request', `${JSON.stringify(sha256)} is not a lower-case sha256`);
  }
  return `sha256/${sha256.slice(0, 2)}/${sha256}`;
}

export function missingBlob(sha256: string): BoardfleetError {
  return new BoardfleetError('not-found', `the artifact store holds no content with sha256 ${sha256}`);
}
