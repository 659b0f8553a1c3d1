import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { BoardfleetError } from '../../protocol/errors.ts';

/**
 * The harness's control socket: commands answered in order by `ok …`/`error …` lines, and
 * events (`pin B5 1`, `reset external`, `host open`) pushed as any other line.
 */
export class ControlChannel extends EventEmitter<{ event: [words: string[]]; close: [] }> {
  private readonly pending: Array<{ resolve: (words: string[]) => void; reject: (error: Error) => void }> =
    [];
  private buffered = '';
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly socketPath: string,
  ) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.closed = true;
      const error = new BoardfleetError('bench-board-gone', `The simulated board at ${socketPath} went away`);
      for (const waiter of this.pending.splice(0)) waiter.reject(error);
      this.emit('close');
    });
  }

  static connect(socketPath: string): Promise<ControlChannel> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath);
      socket.once('connect', () => resolve(new ControlChannel(socket, socketPath)));
      socket.once('error', (error) =>
        reject(
          new BoardfleetError(
            'bench-board-unreachable',
            `No simulated board answers on ${socketPath}: ${error.message}`,
            {
              cause: error,
            },
          ),
        ),
      );
    });
  }

  /** Sends one command; resolves with the words after `ok`, rejects with the harness's error. */
  command(line: string): Promise<string[]> {
    if (this.closed) {
      return Promise.reject(
        new BoardfleetError('bench-board-gone', `The simulated board at ${this.socketPath} went away`),
      );
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket.write(`${line}\n`);
    });
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf('\n')) >= 0) {
      const words = this.buffered.slice(0, newline).trim().split(/\s+/);
      this.buffered = this.buffered.slice(newline + 1);
      if (words[0] === 'ok') this.pending.shift()?.resolve(words.slice(1));
      else if (words[0] === 'error') {
        this.pending.shift()?.reject(new BoardfleetError('bench-board-command', words.slice(1).join(' ')));
      } else this.emit('event', words);
    }
  }
}
