import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ADMIN_TOKEN_FILE } from '../protocol/api/session.ts';
import { BoardfleetError } from '../protocol/errors.ts';
import { CERTIFICATE_REFUSED, fetchTrusting } from '../lib/trusting-fetch.ts';

/**
 * One line for a refused request: the method, the path without its query (an upload's query holds
 * every field and a sha256, which bury the reason) and the server's message.
 */
export function apiErrorMessage(method: string, path: string, status: number, message: string): string {
  return `${method} ${path.split('?')[0]} failed (${status}): ${message}`;
}

/**
 * The fetch for an https:// server: trusting the fleet CA in BOARDFLEET_CA, else the one in the
 * server's data dir (the CLI on the server's machine), else the system's CAs.
 */
function serverFetch(baseUrl: string, env: NodeJS.ProcessEnv): typeof fetch {
  const caPem = serverCaPem(baseUrl, env);
  return caPem === null ? fetch : fetchTrusting(caPem);
}

/** The fleet CA an https:// (or wss://) server is verified against, as {@link serverFetch} finds it; null: the system's. */
export function serverCaPem(baseUrl: string, env: NodeJS.ProcessEnv = process.env): string | null {
  if (!baseUrl.startsWith('https:')) return null;
  const caPath = env.BOARDFLEET_CA ?? join(resolve(env.BOARDFLEET_DATA_DIR ?? './data'), 'tls', 'ca.pem');
  if (!existsSync(caPath)) {
    if (env.BOARDFLEET_CA)
      throw new BoardfleetError('invalid-config', `BOARDFLEET_CA ${caPath} does not exist`);
    return null;
  }
  return readFileSync(caPath, 'utf8');
}

/** REST client for the CLI: BOARDFLEET_URL, and BOARDFLEET_TOKEN or the admin token in the data dir. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
    /** Verifies an https:// server against the fleet CA (see `fromEnvironment`). */
    readonly fetch: typeof globalThis.fetch = globalThis.fetch,
  ) {}

  static fromEnvironment(env: NodeJS.ProcessEnv = process.env): ApiClient {
    const baseUrl = (env.BOARDFLEET_URL ?? 'http://localhost:8080').replace(/\/+$/, '');
    let token = env.BOARDFLEET_TOKEN?.trim();
    if (!token) {
      const tokenPath = join(resolve(env.BOARDFLEET_DATA_DIR ?? './data'), ADMIN_TOKEN_FILE);
      if (!existsSync(tokenPath)) {
        throw new BoardfleetError(
          'no-token',
          `no operator token: set BOARDFLEET_TOKEN, or run where the server's data dir is (looked for ${tokenPath})`,
        );
      }
      token = readFileSync(tokenPath, 'utf8').trim();
    }
    return new ApiClient(baseUrl, token, serverFetch(baseUrl, env));
  }

  /** JSON in and out; a ReadableStream body is streamed as it is (uploads), with the headers given. */
  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const streamed = body instanceof ReadableStream;
    let response: Response;
    try {
      response = await this.fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined || streamed ? {} : { 'content-type': 'application/json' }),
          ...headers,
        },
        body: body === undefined ? undefined : streamed ? body : JSON.stringify(body),
        ...(streamed ? { duplex: 'half' } : {}),
      } as RequestInit);
    } catch (error) {
      const cause = (error as { cause?: NodeJS.ErrnoException }).cause;
      if (cause?.code && CERTIFICATE_REFUSED.test(cause.code))
        throw new BoardfleetError(
          'untrusted-server',
          `the server at ${this.baseUrl} is not trusted: ${cause.message} (give its fleet CA, <data dir>/tls/ca.pem, as BOARDFLEET_CA)`,
        );
      throw new BoardfleetError(
        'server-unreachable',
        `cannot reach the Boardfleet server at ${this.baseUrl} (${(error as Error).cause ?? (error as Error).message}); is it running? set BOARDFLEET_URL`,
      );
    }
    const text = await response.text();
    const parsed = text ? (JSON.parse(text) as unknown) : undefined;
    if (!response.ok) {
      const message = (parsed as { message?: string } | undefined)?.message ?? response.statusText;
      throw new BoardfleetError('api-error', apiErrorMessage(method, path, response.status, message));
    }
    return parsed as T;
  }

  /**
   * Follows a server-sent event stream until the server ends it. A dropped connection is opened
   * again with Last-Event-ID, so nothing is missed or repeated.
   */
  async *events(path: string): AsyncGenerator<{ event: string; data: unknown }> {
    let lastEventId: string | undefined;
    for (let reconnects = 0; ; reconnects++) {
      let response: Response;
      try {
        response = await this.fetch(`${this.baseUrl}${path}`, {
          headers: {
            authorization: `Bearer ${this.token}`,
            accept: 'text/event-stream',
            ...(lastEventId ? { 'last-event-id': lastEventId } : {}),
          },
        });
      } catch (error) {
        if (reconnects >= 5) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1000));
        continue;
      }
      if (!response.ok || !response.body) {
        throw new BoardfleetError(
          'api-error',
          apiErrorMessage('GET', path, response.status, await response.text()),
        );
      }
      let buffer = '';
      try {
        for await (const chunk of response.body.pipeThrough(new TextDecoderStream())) {
          buffer += chunk;
          let boundary: number;
          while ((boundary = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, boundary);
            buffer = buffer.slice(boundary + 2);
            const fields = new Map<string, string>();
            for (const line of block.split('\n')) {
              const colon = line.indexOf(':');
              if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
            }
            if (fields.has('id')) lastEventId = fields.get('id');
            const event = fields.get('event') ?? 'message';
            yield { event, data: JSON.parse(fields.get('data') ?? 'null') as unknown };
            if (event === 'end') return;
          }
        }
      } catch (error) {
        if (reconnects >= 5) throw error;
      }
    }
  }
}
