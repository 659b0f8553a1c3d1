/** `--json` prints stable machine-readable output; otherwise an aligned table for people. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printTable(rows: Array<Record<string, string>>, columns: string[]): void {
  if (rows.length === 0) {
    process.stdout.write('(none)\n');
    return;
  }
  const widths = columns.map((column) =>
    Math.max(column.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: string[]) =>
    `${cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd()}\n`;
  process.stdout.write(line(columns.map((column) => column.toUpperCase())));
  for (const row of rows) process.stdout.write(line(columns.map((column) => row[column] ?? '')));
}

export function formatAge(at: number | null, now = Date.now()): string {
  if (at === null) return '-';
  const seconds = Math.max(0, Math.round((now - at) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

/** A moment as `2026-12-05 14:03` (UTC), or `2026-12-05 14:03:27` to the second, or `-`. */
export function formatTime(at: number | null, precision: 'minutes' | 'seconds' = 'minutes'): string {
  const length = precision === 'seconds' ? 19 : 16;
  return at === null ? '-' : new Date(at).toISOString().slice(0, length).replace('T', ' ');
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/**
 * A measured number as people read it: at most `digits` decimals, trailing zeros kept so columns
 * line up (`0.62`, not `0.6198401765980229`).
 */
export function formatNumber(value: number, digits = 2): string {
  return value.toFixed(digits);
}

/** A share given in percent (0–100): whole numbers plain, fractions to one decimal (`12.5%`). */
export function formatPercent(percent: number): string {
  const rounded = Math.round(percent * 10) / 10;
  return `${Number.isInteger(rounded) ? rounded : rounded.toFixed(1)}%`;
}

/** A duration in seconds as its two largest units: `45s`, `12m 5s`, `3h 20m`, `4d 2h`. */
export function formatDuration(totalSeconds: number): string {
  const seconds = Math.max(0, Math.round(totalSeconds));
  const units: Array<[string, number]> = [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ];
  const parts: string[] = [];
  let rest = seconds;
  for (const [unit, size] of units) {
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count > 0 || (parts.length > 0 && parts.length < 2)) parts.push(`${count}${unit}`);
    if (parts.length === 2) break;
  }
  return parts.length > 0 ? parts.join(' ') : '0s';
}

export type Colour = 'green' | 'red' | 'yellow' | 'cyan' | 'dim';
export type Paint = (text: string, colour: Colour) => string;

const ANSI: Record<Colour, number> = { green: 32, red: 31, yellow: 33, cyan: 36, dim: 2 };

/** Colours text for a terminal; plain for pipes, files and `NO_COLOR` (https://no-color.org). */
export function painter(stream: { isTTY?: boolean } = process.stdout, env = process.env): Paint {
  if (!stream.isTTY || env.NO_COLOR) return (text) => text;
  return (text, colour) => `\x1b[${ANSI[colour]}m${text}\x1b[0m`;
}
