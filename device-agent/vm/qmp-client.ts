import { createConnection, type Socket } from 'node:net';
import { BoardfleetError } from '../../protocol/errors.ts';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

/**
 * A client for qemu's machine protocol (QMP) on a unix socket: one JSON object per line, a
 * greeting, then `qmp_capabilities` before any command. Commands carry an id so their answers
 * are matched even with events in between.
 */
export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly onEvent: (event: QmpEvent) => void,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => this.receive(text));
    socket.on('close', () => this.fail(new BoardfleetError('qmp-closed', 'qemu closed its QMP socket')));
    socket.on('error', (error) => this.fail(error));
  }

  /** Connects and negotiates; rejects when nothing listens on `path` (yet). */
  static async connect(path: string, onEvent: (event: QmpEvent) => void = () => {}): Promise<QmpClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const connection = createConnection(path);
      connection.once('connect', () => {
        connection.off('error', reject);
        resolve(connection);
      });
      connection.once('error', reject);
    });
    const client = new QmpClient(socket, onEvent);
    // The greeting arrives first and carries no id; the capabilities answer follows it.
    await client.execute('qmp_capabilities');
    return client;
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) return Promise.reject(new BoardfleetError('qmp-closed', 'qemu closed its QMP socket'));
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  /** A human monitor command (`info usernet`), whose answer is text. */
  async humanMonitor(commandLine: string): Promise<string> {
    return String(await this.execute('human-monitor-command', { 'command-line': commandLine }));
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private receive(text: string): void {
    this.buffer += text;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (!line) continue;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (typeof message.event === 'string') {
        this.onEvent({ event: message.event, data: message.data as Record<string, unknown> | undefined });
        continue;
      }
      const pending = typeof message.id === 'string' ? this.pending.get(message.id) : undefined;
      if (!pending) continue;
      this.pending.delete(message.id as string);
      if ('error' in message) {
        const error = message.error as { class?: string; desc?: string };
        pending.reject(
          new BoardfleetError('qmp-error', `qemu refused the command: ${error.desc ?? error.class}`),
        );
      } else pending.resolve(message.return);
    }
  }

  private fail(error: Error): void {
    this.closed = true;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
  }
}
