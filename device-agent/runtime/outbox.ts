import { join } from 'node:path';
import type { DeviceEvent } from '../../protocol/schemas.ts';
import { readJson, writeJsonAtomically } from '../../lib/atomic-file.ts';

const ACKNOWLEDGED_WRITE_DELAY_MS = 1_000;

interface OutboxFile {
  schemaVersion: 1;
  events: DeviceEvent[];
  dropped: number;
}

/**
 * Events waiting for the broker's acknowledgement, on disk so they survive a restart. Bounded:
 * when full, the oldest event is dropped and counted rather than growing without end.
 */
export class Outbox {
  private readonly path: string;
  private state: OutboxFile;
  /** Set while acknowledgements wait to be written. */
  private lazyWrite: NodeJS.Timeout | null = null;

  constructor(
    dataDir: string,
    private readonly capacity = 1_000,
  ) {
    this.path = join(dataDir, 'outbox.json');
    this.state = readJson<OutboxFile>(this.path) ?? { schemaVersion: 1, events: [], dropped: 0 };
  }

  add(event: DeviceEvent): void {
    this.state.events.push(event);
    while (this.state.events.length > this.capacity) {
      this.state.events.shift();
      this.state.dropped++;
    }
    this.persist();
  }

  /** Oldest first. */
  pending(): readonly DeviceEvent[] {
    return this.state.events;
  }

  get dropped(): number {
    return this.state.dropped;
  }

  /**
   * Forgets an acknowledged event. Written with the next event or within a second, not at once:
   * after a crash in between the event is sent again, and the server drops it by its id. One
   * write per event instead of two spares a device's flash (and a simulated fleet's CPU).
   */
  acknowledge(id: string): void {
    const index = this.state.events.findIndex((event) => event.id === id);
    if (index < 0) return;
    this.state.events.splice(index, 1);
    this.lazyWrite ??= setTimeout(() => this.persist(), ACKNOWLEDGED_WRITE_DELAY_MS).unref();
  }

  /** Writes acknowledgements still waiting (the agent stops). */
  close(): void {
    if (this.lazyWrite) this.persist();
  }

  private persist(): void {
    if (this.lazyWrite) clearTimeout(this.lazyWrite);
    this.lazyWrite = null;
    writeJsonAtomically(this.path, this.state);
  }
}
