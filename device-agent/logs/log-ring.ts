import { EventEmitter } from 'node:events';
import {
  closeSync,
  ftruncateSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  LOG_LINE_MAX_CHARS,
  type LogLine,
  logLineSchema,
  type LogSource,
} from '../../protocol/device-logs.ts';

export interface LogRingOptions {
  /** `<data dir>/logs`. */
  dir: string;
  /** Bytes kept on disk at most (default 8 MiB); the oldest segment goes past it. */
  capBytes?: number;
  /** Lines kept in memory for watchers that follow closely (default 2,048). */
  memoryLines?: number;
  now?: () => number;
}

/** Which lines a reader wants: a set of sources, or every source but attached boards. */
export type SourceFilter = ReadonlySet<LogSource> | null;

export const DEFAULT_LOG_CAP_BYTES = 8 * 1024 * 1024;
/** Segments per cap: dropping the oldest one frees an eighth of the ring. */
const SEGMENTS_PER_CAP = 8;
const SEGMENT_PATTERN = /^(\d{16})\.ndjson$/;

export const matches = (filter: SourceFilter, source: LogSource): boolean =>
  filter === null ? !source.startsWith('board:') : filter.has(source);

interface Segment {
  firstSeq: number;
  path: string;
}

/**
 * Every workload's output as numbered lines in segment files under `<data dir>/logs`, one
 * sequence per device that carries on across agent restarts (it continues after the newest line
 * on disk, or the newest segment's first number when that is empty). The ring never grows past
 * its cap: a full segment is closed and the oldest ones are deleted. A line torn by a crash (no
 * newline at the end of the newest segment) is cut off on start; a line that does not parse is
 * skipped when reading. Appends are written at once (no fsync: a log line is not worth a flush).
 */
export class LogRing extends EventEmitter<{ line: [LogLine] }> {
  private readonly segments: Segment[] = [];
  private readonly segmentBytes: number;
  private readonly capBytes: number;
  private readonly memoryLines: number;
  private readonly recent: LogLine[] = [];
  private readonly now: () => number;
  private fd: number | null = null;
  private currentBytes = 0;
  private seq = 0;
  /** The last segment read from disk, parsed: a backlog is read page by page from the same file. */
  private cached: { path: string; size: number; lines: LogLine[] } | null = null;

  constructor(private readonly options: LogRingOptions) {
    super();
    this.capBytes = options.capBytes ?? DEFAULT_LOG_CAP_BYTES;
    this.segmentBytes = Math.max(4096, Math.floor(this.capBytes / SEGMENTS_PER_CAP));
    this.memoryLines = options.memoryLines ?? 2048;
    this.now = options.now ?? Date.now;
    mkdirSync(options.dir, { recursive: true });
    for (const name of readdirSync(options.dir).sort()) {
      const match = SEGMENT_PATTERN.exec(name);
      if (match) this.segments.push({ firstSeq: Number(match[1]), path: join(options.dir, name) });
    }
    const newest = this.segments.at(-1);
    if (newest) {
      this.fd = openSync(newest.path, 'a+');
      this.currentBytes = cutTornLine(this.fd);
      const lines = parseSegment(readFileSync(newest.path));
      this.seq = Math.max(newest.firstSeq, (lines.at(-1)?.seq ?? -1) + 1);
      this.recent.push(...lines.slice(-this.memoryLines));
    }
  }

  /** The number the next line gets. */
  get nextSeq(): number {
    return this.seq;
  }

  /** Appends one line of a workload's output (split on newlines, each part cut to the protocol's length). */
  append(source: LogSource, stream: LogLine['stream'], text: string): void {
    for (const part of text.split('\n')) {
      const line: LogLine = {
        seq: this.seq,
        at: this.now(),
        source,
        stream,
        text: part.replace(/\r$/, '').slice(0, LOG_LINE_MAX_CHARS),
      };
      this.write(line);
      this.seq++;
      this.recent.push(line);
      if (this.recent.length > this.memoryLines) this.recent.shift();
      this.emit('line', line);
    }
  }

  /**
   * Up to `limit` lines after `afterSeq` that the filter lets through, oldest first, and `through`:
   * the newest sequence number considered (a reader continues after it).
   */
  read(afterSeq: number, filter: SourceFilter, limit: number): { lines: LogLine[]; through: number } {
    const lines: LogLine[] = [];
    let through = Math.min(afterSeq, this.seq - 1);
    const first = this.recent[0];
    const source = first && first.seq <= afterSeq + 1 ? [this.recent] : this.segmentsFrom(afterSeq);
    for (const chunk of source) {
      for (const line of chunk) {
        if (line.seq <= afterSeq) continue;
        if (lines.length >= limit) return { lines, through };
        through = line.seq;
        if (matches(filter, line.source)) lines.push(line);
      }
    }
    return { lines, through };
  }

  /** The sequence number to read after for the lines written at or after `sinceAt`. */
  afterSeqSince(sinceAt: number): number {
    for (const lines of this.segmentsNewestFirst()) {
      if (lines.length === 0) continue;
      const index = lines.findIndex((line) => line.at >= sinceAt);
      if (index > 0) return (lines[index]?.seq ?? this.seq) - 1;
      if (index === -1) return (lines.at(-1) as LogLine).seq;
    }
    return -1;
  }

  /** The sequence number to read after for the newest `count` lines the filter lets through. */
  afterSeqForTail(count: number, filter: SourceFilter): number {
    let remaining = count;
    for (const lines of this.segmentsNewestFirst()) {
      for (let index = lines.length - 1; index >= 0; index--) {
        const line = lines[index] as LogLine;
        if (!matches(filter, line.source)) continue;
        if (--remaining === 0) return line.seq - 1;
      }
    }
    return -1;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private write(line: LogLine): void {
    const bytes = Buffer.from(`${JSON.stringify(line)}\n`);
    if (this.fd === null || this.currentBytes + bytes.length > this.segmentBytes) this.rotate(line.seq);
    writeSync(this.fd as number, bytes);
    this.currentBytes += bytes.length;
  }

  /** Starts a segment at `firstSeq`, deleting the oldest ones until the ring fits its cap again. */
  private rotate(firstSeq: number): void {
    if (this.fd !== null) closeSync(this.fd);
    const path = join(this.options.dir, `${String(firstSeq).padStart(16, '0')}.ndjson`);
    this.fd = openSync(path, 'a+');
    this.currentBytes = 0;
    this.segments.push({ firstSeq, path });
    // The new segment counts as full: after the next rotation the ring must still fit.
    let total = this.segmentBytes;
    for (let index = this.segments.length - 2; index >= 0; index--) {
      const segment = this.segments[index] as Segment;
      total += sizeOf(segment.path);
      if (total > this.capBytes) {
        for (const old of this.segments.splice(0, index + 1)) rmSync(old.path, { force: true });
        break;
      }
    }
  }

  /** The parsed segments from the one holding `afterSeq + 1` on, oldest first, read one at a time. */
  private *segmentsFrom(afterSeq: number): Generator<LogLine[]> {
    const start = this.segments.findLastIndex((segment) => segment.firstSeq <= afterSeq + 1);
    for (const segment of this.segments.slice(Math.max(0, start))) yield this.load(segment);
  }

  private *segmentsNewestFirst(): Generator<LogLine[]> {
    for (const segment of [...this.segments].reverse()) yield this.load(segment);
  }

  private load(segment: Segment): LogLine[] {
    let bytes: Buffer;
    try {
      bytes = readFileSync(segment.path);
    } catch {
      return []; // Deleted by a rotation meanwhile.
    }
    if (this.cached?.path === segment.path && this.cached.size === bytes.length) return this.cached.lines;
    const lines = parseSegment(bytes);
    this.cached = { path: segment.path, size: bytes.length, lines };
    return lines;
  }
}

function parseSegment(bytes: Buffer): LogLine[] {
  const lines: LogLine[] = [];
  for (const text of bytes.toString('utf8').split('\n')) {
    if (!text) continue;
    try {
      const parsed = logLineSchema.safeParse(JSON.parse(text));
      if (parsed.success) lines.push(parsed.data);
    } catch {
      // A line a crash tore or a disk error garbled: the others still count.
    }
  }
  return lines;
}

/** Cuts a last line with no newline (a write torn by a crash); returns the size left. */
function cutTornLine(fd: number): number {
  const size = fstatSync(fd).size;
  if (size === 0) return 0;
  const tailSize = Math.min(size, 2 * 64 * 1024);
  const tail = Buffer.alloc(tailSize);
  readSync(fd, tail, 0, tailSize, size - tailSize);
  if (tail[tailSize - 1] === 0x0a) return size;
  const newline = tail.lastIndexOf(0x0a);
  const kept = newline === -1 ? (size > tailSize ? size : 0) : size - tailSize + newline + 1;
  ftruncateSync(fd, kept);
  return kept;
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
