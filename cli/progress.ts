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

/**
 * Several progress bars at once, a line each (one per board flashed together). A bar goes
 * through stages (Writing, then Verifying), each counted from 0 to `total`. Piped, each stage
 * prints its start line and, once it reached its total, its finish line, like {@link progressBar}.
 */
export function progressBars(unit: 'bytes' | 'items' = 'bytes') {
  const format = unit === 'bytes' ? formatBytes : (value: number) => String(Math.round(value));
  const multi = process.stderr.isTTY
    ? new cliProgress.MultiBar(
        {
          format: `{label} {stage} [{bar}] {percentage}% | {done}/{size} | {rate}/s`,
          hideCursor: true,
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  return {
    add(label: string, total: number) {
      const bar = multi?.create(total, 0, {
        label,
        stage: '',
        done: format(0),
        size: format(total),
        rate: format(0),
      });
      let stage = '';
      let started = performance.now();
      let done = 0;
      let reported = false;
      const seconds = () => Math.max((performance.now() - started) / 1000, 1e-3);
      const finishStage = () => {
        if (multi || !stage || done < total || reported) return;
        reported = true;
        process.stderr.write(
          `${label} ${stage}: done in ${seconds().toFixed(1)} s (${format(total / seconds())}/s)\n`,
        );
      };
      return {
        update(value: number, nextStage = stage) {
          if (nextStage !== stage) {
            finishStage();
            stage = nextStage;
            started = performance.now();
            reported = false;
            if (!multi) process.stderr.write(`${label} ${stage}: ${format(total)}…\n`);
          }
          done = value;
          bar?.update(value, { stage, done: format(value), rate: format(value / seconds()) });
        },
        stop() {
          finishStage();
          bar?.stop();
        },
      };
    },
    stop() {
      multi?.stop();
    },
  };
}
