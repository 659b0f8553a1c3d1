import type { RolloutWave } from '../api/types.ts';

type Counts = RolloutWave['counts'];

/** The parts of a wave (or a whole rollout) by outcome, in the order the bar draws them. */
export function progressSegments(counts: Counts) {
  return [
    { key: 'committed', label: 'committed', value: counts.committed },
    { key: 'in-progress', label: 'in progress', value: counts.inProgress },
    { key: 'failed', label: 'failed', value: counts.failed - counts.rolledBack },
    { key: 'rolled-back', label: 'rolled back', value: counts.rolledBack },
    { key: 'queued', label: 'queued', value: counts.queued },
  ];
}

/** A bar with one coloured part per outcome; the label says what it counts to screen readers. */
export function ProgressBar({ counts, label }: { counts: Counts; label: string }) {
  const share = (value: number) => (counts.size > 0 ? (value / counts.size) * 100 : 0);
  return (
    <div
      class="bar"
      role="progressbar"
      aria-label={`${label}: ${counts.committed} of ${counts.size} committed`}
      aria-valuemin={0}
      aria-valuemax={counts.size}
      aria-valuenow={counts.committed}
    >
      {progressSegments(counts).map((segment) =>
        segment.value > 0 ? (
          <span
            key={segment.key}
            class={`segment ${segment.key}`}
            style={{ width: `${share(segment.value)}%` }}
            title={`${segment.value} ${segment.label}`}
          />
        ) : null,
      )}
    </div>
  );
}
