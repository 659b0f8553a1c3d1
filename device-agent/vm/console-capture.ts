import { appendFileSync, closeSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface ConsoleCaptureOptions {
  /** Every console line is appended here; the file keeps its tail once it outgrows `fileCapBytes`. */
  file?: string;
  /** Default 1 MiB. */
  fileCapBytes?: number;
  /** Lines kept in memory for failure reasons and readiness checks (default 200). */
  ringLines?: number;
}

const DEFAULT_FILE_CAP = 1024 * 1024;

/**
 * A VM's serial console split into lines: the last N in memory, every one to listeners and to
 * a console file that never grows past its cap (it is cut to the newest half, at a line start,
 * when it would), so a VM printing forever cannot fill the device's disk.
 */
export class ConsoleCapture {
  private readonly ring: string[] = [];
  private partial = '';
  private readonly listeners = new Set<(line: string) => void>();
  private readonly fileCapBytes: number;
  private readonly ringLines: number;

  constructor(private readonly options: ConsoleCaptureOptions = {}) {
    this.fileCapBytes = options.fileCapBytes ?? DEFAULT_FILE_CAP;
    this.ringLines = options.ringLines ?? 200;
    if (options.file) mkdirSync(dirname(options.file), { recursive: true });
  }

  /** Bytes as the guest printed them; complete lines go out at once. */
  write(chunk: Buffer | string): void {
    const text = this.partial + chunk.toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    const complete = lines.map((line) => line.replace(/\r+$/, ''));
    if (complete.length === 0) return;
    this.appendToFile(complete.join('\n') + '\n');
    for (const line of complete) {
      this.ring.push(line);
      for (const listener of this.listeners) listener(line);
    }
    if (this.ring.length > this.ringLines) this.ring.splice(0, this.ring.length - this.ringLines);
  }

  /** A line the host adds (a boot marker): in the file only, never seen by readiness checks. */
  note(line: string): void {
    this.appendToFile(`${line}\n`);
  }

  /** Emits a last line the guest did not end (it stopped mid-line). */
  end(): void {
    if (this.partial) this.write('\n');
  }

  onLine(listener: (line: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The newest `count` lines, oldest first. */
  tail(count = this.ringLines): string[] {
    return this.ring.slice(-count);
  }

  private appendToFile(text: string): void {
    const file = this.options.file;
    if (!file) return;
    let size = 0;
    try {
      size = statSync(file).size;
    } catch {
      // Not there yet: the append creates it.
    }
    if (size + Buffer.byteLength(text) > this.fileCapBytes) keepTail(file, size, this.fileCapBytes / 2);
    appendFileSync(file, text);
  }
}

/** Rewrites `file` with its last `keepBytes` or fewer, starting at a line. */
function keepTail(file: string, size: number, keepBytes: number): void {
  const start = Math.max(0, size - keepBytes);
  const buffer = Buffer.alloc(size - start);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buffer, 0, buffer.length, start);
  } finally {
    closeSync(fd);
  }
  const newline = buffer.indexOf(0x0a);
  writeFileSync(file, newline >= 0 ? buffer.subarray(newline + 1) : Buffer.alloc(0));
}
