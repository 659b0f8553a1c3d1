import { session } from './session.ts';

/** An API answer other than 2xx, with the server's own message (`{statusCode, code, message}`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Sent with every request: the session cookie alone does not let a write through, this header
 * must come too, and a page of another site cannot send it.
 */
const CSRF_HEADERS = { 'x-boardfleet-csrf': '1' };

async function errorFrom(response: Response): Promise<ApiError> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as { code?: string; message?: string };
    return new ApiError(response.status, body.code ?? 'http-error', body.message ?? response.statusText);
  } catch {
    return new ApiError(response.status, 'http-error', text || response.statusText);
  }
}

/**
 * Calls the REST API in the session the cookie carries; a 401 signs out (the session ended, or its
 * token was revoked), unless `keepSession` says the call is the sign-in itself.
 */
export async function api<T>(
  method: string,
  path: string,
  options: { body?: unknown; keepSession?: boolean; signal?: AbortSignal } = {},
): Promise<T> {
  const response = await fetch(path, {
    method,
    headers: {
      ...CSRF_HEADERS,
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && !options.keepSession) session.signOut();
    throw error;
  }
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

/** A query string from the values that are set. */
export function query(params: Record<string, string | number | boolean | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

/**
 * Downloads an artifact: the bytes come through fetch (an error can then be shown on the page
 * rather than as a downloaded error file) and are handed to the browser as a blob.
 */
export async function downloadArtifact(artifactId: string, fileName: string): Promise<void> {
  const response = await fetch(`/api/v1/artifacts/${encodeURIComponent(artifactId)}/content`, {
    headers: CSRF_HEADERS,
  });
  if (!response.ok) throw await errorFrom(response);
  const url = URL.createObjectURL(await response.blob());
  try {
    const link = document.createElement('a');
    link.href = url;
    link.download = fileName;
    document.body.append(link);
    link.click();
    link.remove();
  } finally {
    // The click has started the download; the URL can go once the browser has taken it.
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
}

/** Opens a server-sent event stream through fetch, which (unlike EventSource) can be aborted and read as a stream. */
export function openEventStream(
  path: string,
  signal: AbortSignal,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(path, { headers: { ...CSRF_HEADERS, accept: 'text/event-stream', ...headers }, signal }).then(
    async (response) => {
      if (!response.ok) {
        if (response.status === 401) session.signOut();
        throw await errorFrom(response);
      }
      return response;
    },
  );
}
