import { useEffect, useState } from 'preact/hooks';
import { ApiError, openEventStream } from '../api/client.ts';
import type { LiveEvents } from '../api/types.ts';
import { SseParser } from './sse-parser.ts';

export type LiveStatus = 'connecting' | 'live' | 'reconnecting';

type Handler<K extends keyof LiveEvents> = (data: LiveEvents[K]) => void;

const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 15_000;

/**
 * One stream for the whole app. After every (re)connect the server says `hello`; views then
 * refetch the snapshots they show and apply events on top, so what they show is right even
 * after events were missed while the connection was down.
 */
class LiveStream {
  private readonly handlers = new Map<string, Set<(data: unknown) => void>>();
  private readonly statusListeners = new Set<(status: LiveStatus) => void>();
  private controller: AbortController | null = null;
  private current: LiveStatus = 'connecting';
  /** Health samples are sent for one device only (the one on screen): a whole fleet's would flood the page. */
  private healthFilter = 'none';

  get status(): LiveStatus {
    return this.current;
  }

  start(): void {
    if (this.controller) return;
    const controller = new AbortController();
    this.controller = controller;
    void this.run(controller.signal);
  }

  stop(): void {
    this.controller?.abort();
    this.controller = null;
    this.setStatus('connecting');
  }

  /** Streams `health` events of one device until the returned function is called. */
  watchHealth(deviceId: string): () => void {
    this.setHealthFilter(deviceId);
    return () => this.setHealthFilter('none');
  }

  private setHealthFilter(filter: string): void {
    if (filter === this.healthFilter) return;
    this.healthFilter = filter;
    if (!this.controller) return;
    this.stop();
    this.start();
  }

  on<K extends keyof LiveEvents>(event: K, handler: Handler<K>): () => void {
    const set = this.handlers.get(event) ?? new Set();
    set.add(handler as (data: unknown) => void);
    this.handlers.set(event, set);
    return () => set.delete(handler as (data: unknown) => void);
  }

  onStatus(listener: (status: LiveStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  private async run(signal: AbortSignal): Promise<void> {
    let retryMs = RETRY_MIN_MS;
    while (!signal.aborted) {
      try {
        const response = await openEventStream(
          `/api/v1/live?health=${encodeURIComponent(this.healthFilter)}`,
          signal,
        );
        retryMs = RETRY_MIN_MS;
        await this.read(response, signal);
      } catch (error) {
        if (signal.aborted || (error instanceof ApiError && error.status === 401)) return;
      }
      if (signal.aborted) return;
      this.setStatus('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, retryMs));
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    }
  }

  private async read(response: Response, signal: AbortSignal): Promise<void> {
    if (!response.body) throw new Error('the live stream has no body');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    signal.addEventListener('abort', () => void reader.cancel(), { once: true });
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      for (const event of parser.push(value)) {
        if (event.event === 'hello') this.setStatus('live');
        let data: unknown;
        try {
          data = JSON.parse(event.data);
        } catch {
          continue;
        }
        for (const handler of this.handlers.get(event.event) ?? []) handler(data);
      }
    }
  }

  private setStatus(status: LiveStatus): void {
    this.current = status;
    for (const listener of this.statusListeners) listener(status);
  }
}

export const live = new LiveStream();

/** Subscribes a component to one live event for as long as it is mounted. */
export function useLiveEvent<K extends keyof LiveEvents>(
  event: K,
  handler: Handler<K>,
  deps: unknown[],
): void {
  useEffect(() => live.on(event, handler), deps);
}

export function useLiveStatus(): LiveStatus {
  const [status, setStatus] = useState(live.status);
  useEffect(() => {
    const unsubscribe = live.onStatus(setStatus);
    // Effects run after the next frame, the stream starts at once: a fast `hello` may already have
    // changed the status since this component's first render, and no listener heard it.
    setStatus(live.status);
    return unsubscribe;
  }, []);
  return status;
}
