import { existsSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';

export interface DownloadRequest {
  url: string;
  /** Where the bytes go; a partial file from an earlier attempt is resumed from its end. */
  destination: string;
  expectedSize: number;
  /** The agent's verifying fetch (see server-trust.ts); default: the global one. */
  fetch?: typeof fetch;
  /** HTTP Basic credentials of the device. */
  auth: { deviceId: string; secret: string };
  signal?: AbortSignal;
  onProgress?: (received: number, total: number) => void;
}

/**
 * Downloads an artifact with resume: an existing partial file is continued with a Range
 * request, so a dropped connection on a slow link costs only what was lost. Returns how many
 * bytes this call transferred. Refuses to grow a file past the expected size (endless data).
 */
export async function downloadArtifact(request: DownloadRequest): Promise<{ transferred: number }> {
  const already = existsSync(request.destination) ? statSync(request.destination).size : 0;
  if (already > request.expectedSize) {
    throw new BoardfleetError(
      'download-oversize',
      `partial download ${request.destination} is larger than the expected ${request.expectedSize} bytes`,
    );
  }
  if (already === request.expectedSize) return { transferred: 0 };
  const response = await (request.fetch ?? fetch)(request.url, {
    headers: {
      authorization: `Basic ${Buffer.from(`${request.auth.deviceId}:${request.auth.secret}`).toString('base64')}`,
      ...(already > 0 ? { range: `bytes=${already}-` } : {}),
    },
    ...(request.signal ? { signal: request.signal } : {}),
  });
  if (!(response.status === 200 || response.status === 206) || !response.body) {
    // A server error (its database away, a proxy before a restarting server) may pass; a refusal will not.
    throw new BoardfleetError(
      response.status >= 500 ? 'unavailable' : 'download-failed',
      `downloading ${request.url} failed: HTTP ${response.status}`,
    );
  }
  // A server that ignores Range answers 200 with the whole file: start over rather than append.
  const resuming = response.status === 206 && already > 0;
  const file = await open(request.destination, resuming ? 'a' : 'w');
  let received = resuming ? already : 0;
  let transferred = 0;
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      received += chunk.length;
      transferred += chunk.length;
      if (received > request.expectedSize) {
        throw new BoardfleetError(
          'download-oversize',
          `the server sent more than the expected ${request.expectedSize} bytes`,
        );
      }
      await file.write(chunk).catch((error: unknown) => {
        throw unwritable(request.destination, error);
      });
      request.onProgress?.(received, request.expectedSize);
    }
    await file.sync().catch((error: unknown) => {
      throw unwritable(request.destination, error);
    });
  } catch (error) {
    // A connection that breaks mid-body is a short download like any other: what arrived is kept.
    if (error instanceof BoardfleetError || request.signal?.aborted) throw error;
    throw truncated(received, request.expectedSize, error);
  } finally {
    await file.close();
  }
  if (received !== request.expectedSize) throw truncated(received, request.expectedSize);
  return { transferred };
}

function truncated(received: number, expectedSize: number, cause?: unknown): BoardfleetError {
  return new BoardfleetError(
    'download-truncated',
    `download ended at ${received} of ${expectedSize} bytes; it resumes from there next time`,
    { cause },
  );
}

/** The disk refused the bytes (full, read-only, failing): a local problem no retry of the download mends. */
function unwritable(destination: string, cause: unknown): BoardfleetError {
  return new BoardfleetError(
    'download-failed',
    `cannot write the download to ${destination}: ${(cause as Error).message}`,
    { cause },
  );
}

const DOWNLOAD_ATTEMPTS = 5;
const FIRST_RETRY_MS = 1_000;

/** Errors worth another try: the connection failed or dropped, or the server had trouble of its own (5xx). */
export function isTransient(error: unknown): boolean {
  return !isBoardfleetError(error) || error.code === 'download-truncated' || error.code === 'unavailable';
}

/**
 * Runs a download again when the connection failed or dropped (a server restarting, a flaky
 * link) or the server answered with an error of its own (5xx), waiting 1 s, 2 s, 4 s… between
 * tries; each try resumes from the partial file. Refusals (4xx, oversize) fail at once.
 */
export async function retryTransient<T>(signal: AbortSignal, download: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await download();
    } catch (error) {
      if (!isTransient(error) || attempt >= DOWNLOAD_ATTEMPTS || signal.aborted) throw error;
      await delay(FIRST_RETRY_MS * 2 ** (attempt - 1), undefined, { signal });
    }
  }
}
