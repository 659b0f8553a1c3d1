/**
 * The fleet's TUF repository as this device trusts it, read with tuf-js (the TUF client workflow:
 * root chain, timestamp, snapshot, targets; signatures, thresholds, versions, expiry and length
 * limits) over the agent's pinned-CA fetch. The first root comes from the server over that
 * channel once the fleet has one; from then on the device refuses anything targets does not sign.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Logger } from 'pino';
import { BaseFetcher, Updater } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { chunkIndexTargetPath } from '../../protocol/chunk-index.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { writeFileAtomically } from '../../lib/atomic-file.ts';
import {
  artifactTargetPath,
  type DeploymentToCheck,
  refusalOf,
  rollbackOrderTargetPath,
  type SignedArtifact,
  type SignedRollbackOrder,
} from './signed-target-check.ts';

/** Upper bounds on what a metadata file may be: an endless answer is cut off, not buffered. */
const LIMITS = {
  rootMaxLength: 512 * 1024,
  timestampMaxLength: 16 * 1024,
  snapshotMaxLength: 256 * 1024,
  targetsMaxLength: 32 * 1024 * 1024,
  fetchTimeout: 30_000,
  fetchRetries: 0,
};

/** Bytes and time one check cost: what `npm run bench` reports as TUF's price per update. */
export interface MetadataCost {
  bytes: number;
  milliseconds: number;
}

/** The artifact's chunk index as targets signs it (null: targets lists none; no delta then). */
export interface SignedChunkIndex {
  sha256: string;
  length: number;
}

/** tuf-js fetches through the agent's verifying fetch, counting what it reads. */
class ServerFetcher extends BaseFetcher {
  bytes = 0;

  constructor(private readonly serverFetch: typeof fetch) {
    super();
  }

  async fetch(url: string): Promise<NodeJS.ReadableStream> {
    const response = await this.serverFetch(url, { signal: AbortSignal.timeout(LIMITS.fetchTimeout) });
    if (!response.ok || !response.body) {
      await response.body?.cancel();
      throw new DownloadHTTPError(`${url} answered ${response.status}`, response.status);
    }
    const stream = Readable.fromWeb(response.body as unknown as WebReadableStream<Uint8Array>);
    stream.on('data', (chunk: Buffer) => (this.bytes += chunk.length));
    return stream;
  }
}

/** A server away or erring, worth another try; not metadata that failed a check. */
function unreachable(error: unknown): boolean {
  if (error instanceof DownloadHTTPError) return error.statusCode >= 500;
  if (error instanceof BoardfleetError)
    return error.code === 'server-unreachable' || error.code === 'unavailable';
  return (
    error instanceof TypeError ||
    (error as Error).name === 'TimeoutError' ||
    (error as Error).name === 'AbortError'
  );
}

export class FleetMetadata {
  private readonly directory: string;

  constructor(
    private readonly options: {
      dataDir: string;
      serverUrl: string;
      fetch: typeof fetch;
      deviceId: string;
      logger: Logger;
    },
  ) {
    this.directory = join(options.dataDir, 'tuf');
  }

  private get metadataUrl(): string {
    return new URL('/tuf/', this.options.serverUrl).toString();
  }

  /**
   * Whether this device holds a trusted root. Without one it asks the server for the fleet's
   * first root (404: the fleet has none yet) and keeps it; once kept it is never given up.
   */
  async hasTrustedRoot(): Promise<boolean> {
    const rootPath = join(this.directory, 'root.json');
    if (existsSync(rootPath)) return true;
    const response = await this.options.fetch(new URL('1.root.json', this.metadataUrl), {
      signal: AbortSignal.timeout(LIMITS.fetchTimeout),
    });
    if (response.status === 404) return false;
    if (!response.ok)
      throw new BoardfleetError('unavailable', `the fleet's first root metadata answered ${response.status}`);
    const text = await response.text();
    if (text.length > LIMITS.rootMaxLength)
      throw new BoardfleetError(
        'metadata-refused',
        `the fleet's first root metadata is over ${LIMITS.rootMaxLength} bytes`,
      );
    mkdirSync(this.directory, { recursive: true, mode: 0o700 });
    writeFileAtomically(rootPath, text, { mode: 0o644 });
    this.options.logger.info({ path: rootPath }, "the fleet's TUF root is trusted from now on");
    return true;
  }

  /**
   * Refreshes the metadata and checks the deployment against targets; throws with the reason when
   * it is not signed as it is, or is a downgrade no signed order allows.
   */
  async check(
    deployment: DeploymentToCheck,
    runningVersion: string | null,
    rollbackOrderId: string | null,
  ): Promise<MetadataCost & { chunkIndex: SignedChunkIndex | null }> {
    const started = performance.now();
    const fetcher = new ServerFetcher(this.options.fetch);
    const updater = new Updater({
      metadataDir: this.directory,
      metadataBaseUrl: this.metadataUrl,
      fetcher,
      config: LIMITS,
    });
    let signed: SignedArtifact | null;
    let order: SignedRollbackOrder | null = null;
    let chunkIndex: SignedChunkIndex | null = null;
    try {
      await updater.refresh();
      const artifact = await updater.getTargetInfo(
        artifactTargetPath(deployment.artifact, deployment.version),
      );
      signed = artifact
        ? {
            length: artifact.length,
            sha256: artifact.hashes.sha256 ?? '',
            name: String(artifact.custom.name ?? ''),
            version: String(artifact.custom.version ?? ''),
          }
        : null;
      const indexTarget = await updater.getTargetInfo(
        chunkIndexTargetPath(deployment.artifact, deployment.version),
      );
      if (indexTarget?.hashes.sha256)
        chunkIndex = { sha256: indexTarget.hashes.sha256, length: indexTarget.length };
      if (rollbackOrderId) {
        const entry = await updater.getTargetInfo(rollbackOrderTargetPath(rollbackOrderId));
        order = entry ? (entry.custom as unknown as SignedRollbackOrder) : null;
        if (order)
          order = {
            device: order.device ?? null,
            release: order.release ?? null,
            from: order.from,
            to: order.to,
          };
      }
    } catch (error) {
      if (unreachable(error))
        throw new BoardfleetError(
          'unavailable',
          `the fleet's update metadata cannot be fetched now: ${(error as Error).message}`,
          {
            cause: error,
          },
        );
      throw new BoardfleetError(
        'metadata-refused',
        `the fleet's update metadata was refused: ${(error as Error).message} (${(error as Error).name})`,
        { cause: error },
      );
    }
    const refusal = refusalOf({
      deployment,
      signed,
      deviceId: this.options.deviceId,
      runningVersion,
      rollbackOrder: rollbackOrderId ? { id: rollbackOrderId, signed: order } : null,
    });
    if (refusal) throw new BoardfleetError('unsigned-target', refusal);
    return { bytes: fetcher.bytes, milliseconds: performance.now() - started, chunkIndex };
  }
}
