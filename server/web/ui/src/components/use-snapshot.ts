import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { live } from '../live/live-stream.ts';

export interface Snapshot<T> {
  data: T | null;
  error: string | null;
  /** Loads again now. */
  reload: () => void;
  /** Loads again soon, at most once per `throttleMs`: for bursts of live events. */
  reloadSoon: () => void;
}

/**
 * Data a view shows, loaded when its inputs change and again after every (re)connect of the live
 * stream, so events missed while disconnected cannot leave the view stale.
 */
export function useSnapshot<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: unknown[],
  throttleMs = 1_000,
): Snapshot<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [generation, setGeneration] = useState(0);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);

  useEffect(() => {
    const controller = new AbortController();
    load(controller.signal).then(
      (value) => {
        if (controller.signal.aborted) return;
        setData(value);
        setError(null);
      },
      (failure: unknown) => {
        if (controller.signal.aborted) return;
        setError(failure instanceof Error ? failure.message : String(failure));
      },
    );
    return () => controller.abort();
  }, [...deps, generation]);

  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  const reloadSoon = useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      reload();
    }, throttleMs);
  }, [reload, throttleMs]);

  useEffect(() => live.on('hello', reload), [reload]);
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );
  return { data, error, reload, reloadSoon };
}
