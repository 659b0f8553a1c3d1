import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { readJson, writeJsonAtomically } from '../../lib/atomic-file.ts';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';
import type { DesiredState, Transfer } from '../../protocol/schemas.ts';
import { downloadArtifact, retryTransient } from './artifact-download.ts';
import { type AssemblyStep, DeltaAssembler, discardAssembly, downloadFiles } from './delta-download.ts';
import type { SignedChunkIndex } from './fleet-metadata.ts';
import type { SeedSource } from './update-seeds.ts';

type Deployment = NonNullable<DesiredState['deployment']>;

export interface TransferRequest {
  deployment: Deployment;
  serverUrl: string;
  fetch?: typeof fetch;
  auth: { deviceId: string; secret: string };
  fleetPublicKeyPem: string;
  /** `<data dir>/downloads`. */
  downloads: string;
  /** The other parts of the same deployment (sha256): their downloads stay. */
  siblings?: readonly string[];
  /** What the device has to assemble the new version from; when empty, why there is nothing. */
  seeds: { sources: SeedSource[]; none: string };
  /** The chunk index of the committed version, if kept (`?base=`). */
  baseIndex: Buffer | null;
  /** With TUF: the chunk index the fleet's targets metadata signs (null: none, so no delta). */
  signedChunkIndex?: SignedChunkIndex | null;
  signal: AbortSignal;
  onProgress: (received: number, total: number) => void;
  onAssemblyStep?: (step: AssemblyStep) => void;
  logger: Logger;
}

/** `fallback` is a protocol field of at most 512 characters. */
const FALLBACK_MAX = 512;

/**
 * Brings the deployment's artifact to `downloads/<sha256>.artifact`: assembled by delta from the
 * device's seeds when it can be, else (or when the delta fails in any way) downloaded whole.
 * Either way the result is what the signed manifest names. Returns how it came and what it
 * cost; that record is kept beside the download, so an agent restarted half way through a full
 * download after a failed delta still says why and counts both.
 */
export async function transferArtifact(request: TransferRequest): Promise<Transfer> {
  const { deployment, signal } = request;
  const files = downloadFiles(request.downloads, deployment.sha256);
  const recordFile = files.transfer;
  removeOtherDownloads(request.downloads, [deployment.sha256, ...(request.siblings ?? [])]);
  if (existsSync(files.artifact)) {
    // Done, or a full download under way, when the agent stopped: say how it came, or go on with it.
    const earlier = readJson<Transfer>(recordFile);
    if (earlier?.mode === 'delta') return earlier;
    return full(request, recordFile, earlier?.fallback ?? null, earlier?.bytes ?? 0);
  }
  if (request.seeds.sources.length === 0) return full(request, recordFile, request.seeds.none, 0);
  const assembler = new DeltaAssembler({
    contentUrl: new URL(deployment.url, request.serverUrl).toString(),
    ...(request.fetch ? { fetch: request.fetch } : {}),
    auth: request.auth,
    signal,
    artifact: { sha256: deployment.sha256, size: deployment.size },
    fleetPublicKeyPem: request.fleetPublicKeyPem,
    downloads: request.downloads,
    seeds: request.seeds.sources,
    baseIndex: request.baseIndex,
    ...(request.signedChunkIndex === undefined ? {} : { signedChunkIndex: request.signedChunkIndex }),
    onProgress: request.onProgress,
    ...(request.onAssemblyStep ? { onStep: request.onAssemblyStep } : {}),
  });
  const started = Date.now();
  try {
    const stats = await retryTransient(signal, () => assembler.assemble());
    request.logger.info(
      {
        ...stats,
        bytes: assembler.bytes,
        artifactBytes: deployment.size,
        milliseconds: Date.now() - started,
      },
      `${deployment.artifact} ${deployment.version} assembled by delta`,
    );
    const transfer: Transfer = { mode: 'delta', bytes: assembler.bytes, artifactBytes: deployment.size };
    writeJsonAtomically(recordFile, transfer);
    return transfer;
  } catch (error) {
    if (signal.aborted) throw error;
    discardAssembly(files);
    const reason = isBoardfleetError(error) ? error.message : `unexpected: ${(error as Error).message}`;
    request.logger.warn({ err: error }, `delta update failed; downloading the whole artifact: ${reason}`);
    return full(request, recordFile, `delta failed: ${reason}`, assembler.bytes);
  }
}

/**
 * Downloads the whole artifact (resuming a partial one). `earlierBytes` crossed the network
 * before it (a failed delta); with Range requests the artifact crosses once, however often the
 * download is cut, so that is what it adds.
 */
async function full(
  request: TransferRequest,
  recordFile: string,
  fallback: string | null,
  earlierBytes: number,
): Promise<Transfer> {
  const { deployment } = request;
  const files = downloadFiles(request.downloads, deployment.sha256);
  const transfer = (bytes: number): Transfer => ({
    mode: 'full',
    bytes,
    artifactBytes: deployment.size,
    ...(fallback ? { fallback: fallback.slice(0, FALLBACK_MAX) } : {}),
  });
  writeJsonAtomically(recordFile, transfer(earlierBytes));
  try {
    await retryTransient(request.signal, () =>
      downloadArtifact({
        url: new URL(deployment.url, request.serverUrl).toString(),
        ...(request.fetch ? { fetch: request.fetch } : {}),
        destination: files.artifact,
        expectedSize: deployment.size,
        auth: request.auth,
        signal: request.signal,
        onProgress: request.onProgress,
      }),
    );
  } catch (error) {
    // A full download after a failed delta: its failure is the reason, and the delta's is part of the story.
    if (!fallback?.startsWith('delta failed') || !isBoardfleetError(error) || request.signal.aborted)
      throw error;
    throw new BoardfleetError(error.code, `${error.message} (after a ${fallback})`, { cause: error });
  }
  return transfer(earlierBytes + deployment.size);
}

/** Downloads of other artifacts (deployments given up or replaced) only take room. */
function removeOtherDownloads(downloads: string, kept: readonly string[]): void {
  for (const name of readdirSync(downloads)) {
    if (!kept.includes(name.split('.')[0]!)) rmSync(join(downloads, name), { recursive: true, force: true });
  }
}
