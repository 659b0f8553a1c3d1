import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The part of s3rver's API used here (the package ships no types). */
interface S3rverServer {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverClass = new (options: {
  address: string;
  port: number;
  directory: string;
  silent: boolean;
  configureBuckets: { name: string }[];
}) => S3rverServer;

export interface S3TestServer {
  endpoint: string;
  bucket: string;
  /** s3rver's fixed credentials, as the AWS SDK reads them from the environment. */
  credentials: { AWS_ACCESS_KEY_ID: string; AWS_SECRET_ACCESS_KEY: string };
  dispose(): Promise<void>;
}

/**
 * s3rver, an implementation of the S3 REST protocol (SigV4 signatures, multipart uploads, ranged
 * GETs) keeping objects in a temp folder, on a free loopback port in this process, with one empty
 * bucket.
 */
export async function startS3Server(bucket = 'boardfleet-artifacts'): Promise<S3TestServer> {
  const S3rver = createRequire(import.meta.url)('@20minutes/s3rver') as S3rverClass;
  const directory = mkdtempSync(join(tmpdir(), 'boardfleet-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory,
    silent: true,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    credentials: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' },
    async dispose() {
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
