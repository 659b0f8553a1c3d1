import cliProgress from 'cli-progress';
import { formatBytes } from './output.ts';

/**
 * A progress bar (bytes or items) with rate and ETA on a terminal; plain start/finish lines when output is
 * piped (CI logs, scripts), so long work always shows it is alive.
 */
export function progressBar(label: string, total: number, unit: 'bytes' | 'items' = 'bytes') {
  const format = unit === 'bytes' ? formatBytes : (value: number) => String(Math.round(value));
  const started = performance.now();
  if (!process.stderr.isTTY) {
    process.stderr.write(`${label}: ${format(total)}…\n`);
    return {
      update(_done: number) {},
      stop() {
        const seconds = (performance.now() - started) / 1000;
        process.stderr.write(
          `${label}: done in ${seconds.toFixed(1)} s (${format(total / Math.max(seconds, 1e-3))}/s)\n`,
        );
      },
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {done}/{size} | {rate}/s | ETA {eta_formatted}`,
      hideCursor: true,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { done: format(0), size: format(total), rate: format(0) });
  return {
    update(done: number) {
      const seconds = (performance.now() - started) / 1000;
      bar.update(done, { done: format(done), rate: format(done / Math.max(seconds, 1e-3)) });
    },
    stop() {
      bar.stop();
    },
  };
}
