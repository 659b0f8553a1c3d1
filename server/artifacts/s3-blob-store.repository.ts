import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { BoardfleetError } from '../../protocol/errors.ts';
import { type BlobRange, BlobStore, type ExpectedBlob, blobKey, missingBlob } from './blob-store.ts';
import { IncomingFolder } from './incoming-folder.ts';

/** S3 takes one PUT of at most 5 GiB and parts of at least 5 MiB (but the last). */
const MIN_PART_BYTES = 5 * 1024 * 1024;
const DEFAULT_PART_BYTES = 64 * 1024 * 1024;

export interface S3BlobStoreOptions {
  bucket: string;
  region: string;
  /** An S3-compatible server's URL; null for AWS S3 itself. */
  endpoint: string | null;
  /** `<endpoint>/<bucket>/<key>` rather than `<bucket>.<endpoint>/<key>`: MinIO and most others. */
  forcePathStyle: boolean;
  /** Where uploads are received and verified before they go to the bucket. */
  incomingDir: string;
  /** Blobs larger than this are sent in parts of this size. */
  partBytes?: number;
}

const statusOf = (error: unknown) =>
  (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
const isNamed = (error: unknown, name: string) => error instanceof Error && error.name === name;

/**
 * Blobs as objects `sha256/ab/abcdef…` of an S3-compatible bucket. An upload is verified in a
 * local incoming folder first, then sent whole (PutObject) or, past `partBytes`, as a multipart
 * upload; S3 makes an object visible only once all of it has arrived. Credentials come the
 * standard AWS way (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile or role).
 */
export class S3BlobStore extends BlobStore {
  private readonly incoming: IncomingFolder;
  private readonly partBytes: number;

  private constructor(
    private readonly client: S3Client,
    private readonly options: S3BlobStoreOptions,
  ) {
    super();
    this.partBytes = options.partBytes ?? DEFAULT_PART_BYTES;
    if (this.partBytes < MIN_PART_BYTES)
      throw new RangeError(`S3 parts are at least ${MIN_PART_BYTES} bytes`);
    this.incoming = new IncomingFolder(options.incomingDir);
  }

  /** A store on a bucket that answers; refuses to start with one it cannot reach. */
  static async open(options: S3BlobStoreOptions): Promise<S3BlobStore> {
    const client = new S3Client({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle,
      // Checksums only where S3 requires them: many S3-compatible servers reject the newer
      // default checksum trailers. Integrity is ours: every blob is verified before it is sent.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const store = new S3BlobStore(client, options);
    try {
      await store.checkReadable();
    } catch (error) {
      client.destroy();
      throw error;
    }
    return store;
  }

  async size(sha256: string): Promise<number | null> {
    const key = blobKey(sha256);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: key }));
      return head.ContentLength ?? 0;
    } catch (error) {
      if (statusOf(error) === 404) return null;
      throw this.failure(`could not look up ${key}`, error);
    }
  }

  write(body: Readable, expected: ExpectedBlob): Promise<{ stored: boolean }> {
    return this.incoming.receive(body, expected, async (verified) => {
      if (await this.has(expected.sha256)) return { stored: false };
      const key = blobKey(expected.sha256);
      try {
        if (expected.size <= this.partBytes) await this.putWhole(key, verified, expected.size);
        else await this.putInParts(key, verified, expected.size);
      } catch (error) {
        throw this.failure(`could not store ${key}`, error);
      }
      return { stored: true };
    });
  }

  async read(sha256: string, range?: BlobRange): Promise<Readable> {
    const key = blobKey(sha256);
    try {
      const object = await this.client.send(
        new GetObjectCommand({
          Bucket: this.options.bucket,
          Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      );
      // In Node the SDK hands the body over as the HTTP response stream itself.
      return object.Body as Readable;
    } catch (error) {
      if (isNamed(error, 'NoSuchKey')) throw missingBlob(sha256);
      throw this.failure(`could not read ${key}`, error);
    }
  }

  override async close(): Promise<void> {
    this.client.destroy();
  }

  /**
   * Reads a key no blob has: S3 answers "no such key" only when the bucket exists and these
   * credentials may read it and list it (without s3:ListBucket, a missing key is "access denied").
   */
  private async checkReadable(): Promise<void> {
    try {
      const object = await this.client.send(
        new GetObjectCommand({ Bucket: this.options.bucket, Key: 'sha256/start-check' }),
      );
      (object.Body as Readable).destroy();
    } catch (error) {
      if (isNamed(error, 'NoSuchKey')) return;
      throw this.failure(
        'cannot be read: check BOARDFLEET_S3_* and the AWS credentials, which need s3:GetObject, s3:PutObject and s3:ListBucket',
        error,
      );
    }
  }

  private async putWhole(key: string, file: string, size: number): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.options.bucket,
        Key: key,
        Body: createReadStream(file),
        ContentLength: size,
        ContentType: 'application/octet-stream',
      }),
    );
  }

  private async putInParts(key: string, file: string, size: number): Promise<void> {
    const target = { Bucket: this.options.bucket, Key: key };
    const { UploadId } = await this.client.send(
      new CreateMultipartUploadCommand({ ...target, ContentType: 'application/octet-stream' }),
    );
    try {
      const parts: { ETag: string | undefined; PartNumber: number }[] = [];
      for (let start = 0; start < size; start += this.partBytes) {
        const end = Math.min(start + this.partBytes, size) - 1;
        const PartNumber = parts.length + 1;
        const { ETag } = await this.client.send(
          new UploadPartCommand({
            ...target,
            UploadId,
            PartNumber,
            Body: createReadStream(file, { start, end }),
            ContentLength: end - start + 1,
          }),
        );
        parts.push({ ETag, PartNumber });
      }
      await this.client.send(
        new CompleteMultipartUploadCommand({ ...target, UploadId, MultipartUpload: { Parts: parts } }),
      );
    } catch (error) {
      // Unfinished parts are billed storage until aborted.
      await this.client.send(new AbortMultipartUploadCommand({ ...target, UploadId })).catch(() => undefined);
      throw error;
    }
  }

  private failure(what: string, error: unknown): BoardfleetError {
    const where = `S3 bucket ${this.options.bucket} at ${this.options.endpoint ?? `AWS ${this.options.region}`}`;
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return new BoardfleetError('unavailable', `the artifact store (${where}) ${what}: ${reason}`, {
      cause: error,
    });
  }
}
