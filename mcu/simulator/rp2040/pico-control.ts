import { createServer, type Server, type Socket } from 'node:net';
import type { PinLevel } from '../simulated-board.ts';
import { PICO_ADC_REFERENCE_MV, PICO_ANALOG_INPUTS, PICO_GPIO_COUNT } from './pico-pins.ts';

/** What the control socket's commands act on: the running Pico bench board. */
export interface PicoControlTarget {
  reset(): number;
  readPin(gpio: number): PinLevel;
  setInput(gpio: number, level: PinLevel): void;
  setAdcMillivolts(channel: number, millivolts: number): void;
  status(): string;
  quit(): void;
}

/**
 * The bench board's control socket, with the words of the simavr harness (`harness/bench-board.c`)
 * so `SimulatedBoard` drives a Pico as it drives an Uno; pins are named `GP0`..`GP28`.
 * One command per line, answered in order by `ok …` or `error …`; `broadcast` sends events.
 */
export class PicoControlServer {
  private readonly clients = new Set<Socket>();
  private readonly server: Server;

  constructor(private readonly target: PicoControlTarget) {
    this.server = createServer((socket) => this.accept(socket));
  }

  listen(socketPath: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(socketPath, () => resolve());
    });
  }

  broadcast(line: string): void {
    for (const client of this.clients) client.write(`${line}\n`);
  }

  close(): void {
    for (const client of this.clients) client.destroy();
    this.server.close();
  }

  private accept(socket: Socket): void {
    this.clients.add(socket);
    socket.setEncoding('utf8');
    let buffered = '';
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (!line) continue;
        const answer = this.answer(line.split(/\s+/));
        if (!socket.destroyed) socket.write(`${answer}\n`);
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.clients.delete(socket));
  }

  private answer(words: string[]): string {
    try {
      return this.run(words);
    } catch (error) {
      return `error ${(error as Error).message}`;
    }
  }

  private run([verb, first, second]: string[]): string {
    const { target } = this;
    switch (verb) {
      case 'reset':
        return `ok ${target.reset()}`;
      case 'get': {
        const gpio = gpioNumber(first);
        return gpio === undefined ? `error no pin ${first}` : `ok ${first} ${target.readPin(gpio)}`;
      }
      case 'set': {
        const gpio = gpioNumber(first);
        if (gpio === undefined || (second !== '0' && second !== '1'))
          return 'error set wants a pin such as GP2 and 0 or 1';
        target.setInput(gpio, second === '1' ? 1 : 0);
        return 'ok';
      }
      case 'adc': {
        const channel = Number(first);
        const millivolts = Number(second);
        if (!Number.isInteger(channel) || channel < 0 || channel >= PICO_ANALOG_INPUTS)
          return `error adc wants a channel 0..${PICO_ANALOG_INPUTS - 1}`;
        if (!Number.isFinite(millivolts) || millivolts < 0 || millivolts > PICO_ADC_REFERENCE_MV)
          return `error adc wants 0..${PICO_ADC_REFERENCE_MV} mV`;
        target.setAdcMillivolts(channel, millivolts);
        return 'ok';
      }
      case 'status':
        return `ok ${target.status()}`;
      case 'save':
        // The flash changes only when the launcher writes a UF2 into it, before the board starts.
        return 'ok';
      case 'quit':
        setImmediate(() => target.quit());
        return 'ok';
      case 'corrupt-next-page':
        return 'error the Pico has no bootloader in flash to write pages: its flash is written through the BOOTSEL drive';
      default:
        return `error unknown command: ${verb}`;
    }
  }
}

function gpioNumber(name: string | undefined): number | undefined {
  const match = /^GP(\d+)$/.exec(name ?? '');
  const gpio = Number(match?.[1]);
  return match && gpio < PICO_GPIO_COUNT ? gpio : undefined;
}
