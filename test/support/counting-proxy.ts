import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProxiedRequest {
  method: string;
  path: string;
  range: string | null;
  status: number;
  /** Body bytes passed on to the client. */
  bytesSent: number;
}

/**
 * An HTTP proxy in front of the server that counts the body bytes it passes to the agent for each
 * request, and can stall a download after a given number of bytes (the connection stays open and
 * silent, as on a link that died), so a test knows exactly where an interrupted download stopped.
 * It can also play an attacker between agent and server (a hostile mirror, or a network whose TLS
 * fell): paths in `overrides` are answered with bytes the attacker chose.
 */
export class CountingProxy {
  readonly requests: ProxiedRequest[] = [];
  /** Artifact downloads stop after this many body bytes; null passes everything. */
  stallAfter: number | null = null;
  /** Path (e.g. `/tuf/timestamp.json`) → what to answer instead of the server. */
  readonly overrides = new Map<string, Buffer>();
  private server: Server | null = null;

  constructor(private readonly target: string) {}

  async start(): Promise<string> {
    this.server = createServer((incoming, outgoing) => this.forward(incoming, outgoing));
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  /** Requests for artifact content (downloads). */
  downloads(): ProxiedRequest[] {
    return this.requests.filter((entry) => /^\/api\/v1\/artifacts\/[^/]+\/content/.test(entry.path));
  }

  private forward(incoming: IncomingMessage, outgoing: ServerResponse): void {
    const target = new URL(incoming.url ?? '/', this.target);
    const entry: ProxiedRequest = {
      method: incoming.method ?? 'GET',
      path: target.pathname,
      range: (incoming.headers.range as string | undefined) ?? null,
      status: 0,
      bytesSent: 0,
    };
    this.requests.push(entry);
    const forged = this.overrides.get(target.pathname);
    if (forged) {
      entry.status = 200;
      entry.bytesSent = forged.length;
      outgoing.writeHead(200, { 'content-type': 'application/json', 'content-length': forged.length });
      outgoing.end(forged);
      return;
    }
    const limit = this.downloads().includes(entry) ? this.stallAfter : null;
    const upstream = request(
      target,
      { method: incoming.method, headers: { ...incoming.headers, host: target.host } },
      (response) => {
        entry.status = response.statusCode ?? 0;
        outgoing.writeHead(entry.status, response.headers);
        response.on('data', (chunk: Buffer) => {
          const allowed = limit === null ? chunk.length : Math.max(0, limit - entry.bytesSent);
          if (allowed > 0) {
            const part = allowed < chunk.length ? chunk.subarray(0, allowed) : chunk;
            entry.bytesSent += part.length;
            outgoing.write(part);
          }
          if (allowed < chunk.length) response.pause();
        });
        response.on('end', () => outgoing.end());
      },
    );
    upstream.on('error', () => outgoing.destroy());
    outgoing.on('close', () => upstream.destroy());
    incoming.pipe(upstream);
  }
}
