import { createHash, randomBytes, type Hash } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { BoardfleetError } from '../../protocol/errors.ts';

/** What a download must turn out to be, and how to name it in messages. */
export interface DownloadTarget {
  url: string;
  /** "busybox-static 1:1.35.0-4+deb12u1+b1", "main/binary-arm64/Packages.xz". */
  what: string;
  sha256: string;
  size: number;
  /** Where the expected sha256 and size come from ("the Packages index", "InRelease"). */
  expectedFrom: string;
}

export interface DownloadOptions {
  onProgress?: (receivedBytes: number) => void;
  signal?: AbortSignal;
  /** Give up on a connection that sends nothing for this long. */
  idleTimeoutMs?: number;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/**
 * Streams `target.url` into `destination`, checking size and sha256 on the way; the file
 * appears (atomically renamed) only when both match. A transfer cut short is resumed once
 * with a Range request (or restarted when the server ignores the range).
 */
export async function downloadVerified(
  target: DownloadTarget,
  destination: string,
  options: DownloadOptions = {},
): Promise<void> {
  const partial = `${destination}.${randomBytes(6).toString('hex')}.part`;
  const file = await open(partial, 'w');
  const state = { received: 0, hash: createHash('sha256') };
  try {
    const firstOutcome = await transfer(target, file, state, options, false);
    if (firstOutcome !== 'complete') {
      const secondOutcome = await transfer(target, file, state, options, true);
      if (secondOutcome !== 'complete') {
        throw new BoardfleetError(
          'archive-download-failed',
          `${target.what}: the download from ${target.url} stopped early twice (${firstOutcome}; then ${secondOutcome} after ${state.received} of ${target.size} bytes)`,
        );
      }
    }
    // transfer() completes only at exactly target.size bytes: the size is already checked.
    await file.sync();
    await file.close();
    const actual = state.hash.digest('hex');
    if (actual !== target.sha256) throw mismatch(target, `sha256 ${actual}, expected ${target.sha256}`);
    await rename(partial, destination);
  } finally {
    await file.close().catch(() => undefined);
    await rm(partial, { force: true });
  }
}

/**
 * Fetches a small file (InRelease) whole, with nothing to check it against yet; `limit` keeps
 * a broken or hostile server from filling memory.
 */
export async function downloadBytes(
  url: string,
  limit: number,
  options: DownloadOptions = {},
): Promise<Buffer> {
  const response = await request(url, {}, options.signal);
  if (!response.ok) throw httpError(url, response);
  const chunks: Buffer[] = [];
  let size = 0;
  if (response.body) {
    for await (const chunk of Readable.fromWeb(
      response.body as WebReadableStream<Uint8Array>,
    ) as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) {
        throw new BoardfleetError(
          'archive-download-failed',
          `${url} is larger than ${limit} bytes: not an InRelease file`,
        );
      }
      chunks.push(chunk);
    }
  }
  return Buffer.concat(chunks);
}

function mismatch(target: DownloadTarget, difference: string): BoardfleetError {
  return new BoardfleetError(
    'archive-hash-mismatch',
    `${target.what} downloaded from ${target.url} does not match ${target.expectedFrom}: ${difference}; the download was discarded`,
  );
}

/** One HTTP request; returns 'complete' or why it stopped early (worth one more try unless `lastAttempt`). */
async function transfer(
  target: DownloadTarget,
  file: FileHandle,
  state: { received: number; hash: Hash },
  options: DownloadOptions,
  lastAttempt: boolean,
): Promise<'complete' | string> {
  const idle = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, idle.signal]) : idle.signal;
  const timeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  let timer = setTimeout(() => idle.abort(), timeoutMs);
  const resetTimer = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(), timeoutMs);
  };
  try {
    const headers: Record<string, string> = state.received > 0 ? { Range: `bytes=${state.received}-` } : {};
    let response: Response;
    try {
      response = await request(target.url, headers, signal);
    } catch (error) {
      if (lastAttempt || options.signal?.aborted) throw error;
      return describeNetworkError(error);
    }
    if (response.status >= 500) return `HTTP ${response.status} ${response.statusText}`;
    if (!response.ok) throw httpError(target.url, response);
    if (state.received > 0 && response.status !== 206) {
      // The server ignored the range: start over.
      state.received = 0;
      state.hash = createHash('sha256');
      await file.truncate(0);
    }
    if (!response.body) return 'empty response';
    const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        resetTimer();
        if (state.received + chunk.length > target.size) {
          throw mismatch(target, `more than the expected ${target.size} bytes`);
        }
        await file.write(chunk, 0, chunk.length, state.received);
        state.hash.update(chunk);
        state.received += chunk.length;
        options.onProgress?.(state.received);
      }
    } catch (error) {
      if (error instanceof BoardfleetError || options.signal?.aborted) throw error;
      return idle.signal.aborted ? `nothing received for ${timeoutMs / 1000} s` : describeNetworkError(error);
    }
    return state.received < target.size ? 'the connection closed early' : 'complete';
  } finally {
    clearTimeout(timer);
  }
}

function request(
  url: string,
  headers: Record<string, string>,
  signal: AbortSignal | undefined,
): Promise<Response> {
  return fetch(url, { headers, signal }).catch((error: unknown) => {
    if (signal?.aborted) throw error;
    throw new BoardfleetError('archive-unreachable', `cannot reach ${url}: ${describeNetworkError(error)}`, {
      cause: error,
    });
  });
}

function httpError(url: string, response: Response): BoardfleetError {
  const hint = response.status === 404 ? ' (the mirror may have moved on: load the index again)' : '';
  return new BoardfleetError(
    'archive-download-failed',
    `${url} answered HTTP ${response.status} ${response.statusText}${hint}`,
  );
}

function describeNetworkError(error: unknown): string {
  if (error instanceof BoardfleetError) return error.message;
  // fetch() wraps the useful part ("connect ECONNREFUSED 127.0.0.1:1", "other side closed") in `cause`.
  const cause = (error as { cause?: { message?: string } }).cause;
  return cause?.message ?? (error as Error).message ?? String(error);
}
