import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A round-robin TCP load balancer in front of server replicas, as a deployment puts one: each
 * connection goes to the next backend, and past one that refuses it (killed) to the one after.
 */
export class TcpBalancer {
  private server: Server | null = null;
  private next = 0;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly backends: readonly number[]) {}

  async start(): Promise<string> {
    this.server = createServer((client) => this.forward(client));
    this.server.on('error', () => undefined);
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('balancer has no port');
    return `http://127.0.0.1:${address.port}`;
  }

  private forward(client: Socket): void {
    this.sockets.add(client);
    client.on('error', () => undefined);
    client.once('close', () => this.sockets.delete(client));
    client.pause();
    this.tryBackend(client, this.next++, 0);
  }

  /** Backend `first + tried` (round the list); past one that refuses, the next one. */
  private tryBackend(client: Socket, first: number, tried: number): void {
    if (tried >= this.backends.length) return void client.destroy();
    const port = this.backends[(first + tried) % this.backends.length]!;
    const backend = connect({ host: '127.0.0.1', port });
    this.sockets.add(backend);
    backend.once('close', () => this.sockets.delete(backend));
    backend.once('connect', () => {
      backend.on('error', () => client.destroy());
      client.on('error', () => backend.destroy());
      client.pipe(backend).pipe(client);
      client.resume();
    });
    backend.once('error', (error: NodeJS.ErrnoException) => {
      if (!backend.connecting && error.code !== 'ECONNREFUSED') return;
      backend.destroy();
      this.tryBackend(client, first, tried + 1);
    });
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}
