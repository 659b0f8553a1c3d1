import type { StoredHealth } from '../../protocol/api/devices.ts';
import type { TelemetryRepository } from '../telemetry/telemetry.repository.ts';

/** Devices whose samples are read in one query. */
export const HEALTH_READ_DEVICES = 500;

/**
 * Reads the health samples other replicas stored, for this replica's viewers. What waits is one
 * receive window per device, widened when the device reports again before it was read, and one
 * reader works through it in chunks: a burst of notifications costs a few queries, memory stays
 * bounded by the fleet's size, and the event loop gets a turn between chunks.
 */
export class RemoteHealthReader {
  private readonly waiting = new Map<string, { from: number; to: number }>();
  private reading: Promise<void> | null = null;

  constructor(
    private readonly telemetry: Pick<TelemetryRepository, 'healthReceivedBetween'>,
    private readonly deliver: (deviceId: string, sample: StoredHealth) => void,
    private readonly report: (error: unknown) => void,
  ) {}

  /** These devices reported between `from` and `to` (receive times). */
  add(deviceIds: readonly string[], from: number, to: number): void {
    if (deviceIds.length === 0) return;
    for (const deviceId of deviceIds) {
      const window = this.waiting.get(deviceId);
      this.waiting.set(
        deviceId,
        window ? { from: Math.min(window.from, from), to: Math.max(window.to, to) } : { from, to },
      );
    }
    this.reading ??= this.readWaiting().finally(() => {
      this.reading = null;
    });
  }

  /** Resolves once nothing waits to be read. */
  async idle(): Promise<void> {
    while (this.reading) await this.reading;
  }

  private async readWaiting(): Promise<void> {
    while (this.waiting.size > 0) {
      const chunk = new Map<string, { from: number; to: number }>();
      for (const [deviceId, window] of this.waiting) {
        chunk.set(deviceId, window);
        if (chunk.size >= HEALTH_READ_DEVICES) break;
      }
      let from = Number.POSITIVE_INFINITY;
      let to = 0;
      for (const [deviceId, window] of chunk) {
        this.waiting.delete(deviceId);
        from = Math.min(from, window.from);
        to = Math.max(to, window.to);
      }
      try {
        const samples = await this.telemetry.healthReceivedBetween([...chunk.keys()], from, to);
        for (const { deviceId, sample } of samples) {
          const window = chunk.get(deviceId);
          if (window && sample.receivedAt >= window.from && sample.receivedAt <= window.to)
            this.deliver(deviceId, sample);
        }
      } catch (error) {
        this.report(error);
      }
    }
  }
}
