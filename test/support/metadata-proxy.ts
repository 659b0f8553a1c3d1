import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An attacker between the agent and the server (a hostile mirror, or a network whose TLS fell):
 * it passes everything on, except the paths it has been told to answer itself, with bytes the
 * attacker chose (replayed, mixed, endless, or signed with a stolen key).
 */
export class MetadataProxy {
  /** Path (e.g. `/tuf/timestamp.json`) → what to answer instead of the server. */
  readonly overrides = new Map<string, Buffer>();
  private server: Server | null = null;

  constructor(private readonly target: string) {}

  async start(): Promise<string> {
    this.server = createServer((incoming, outgoing) => this.answer(incoming, outgoing));
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  private answer(incoming: IncomingMessage, outgoing: ServerResponse): void {
    const target = new URL(incoming.url ?? '/', this.target);
    const forged = this.overrides.get(target.pathname);
    if (forged) {
      outgoing.writeHead(200, { 'content-type': 'application/json', 'content-length': forged.length });
      outgoing.end(forged);
      return;
    }
    const upstream = request(
      target,
      { method: incoming.method, headers: { ...incoming.headers, host: target.host } },
      (response) => {
        outgoing.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(outgoing);
      },
    );
    upstream.on('error', () => outgoing.destroy());
    incoming.on('error', () => upstream.destroy());
    incoming.pipe(upstream);
  }
}
