import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** Hex sha256 of bytes or text. */
export function sha256(content: Buffer | Uint8Array | string): string {
  return createHash('sha256').update(content).digest('hex');
}

/**
 * Hex sha256 of a file, streamed so a disk image never has to fit in memory. `onProgress`, when
 * given, hears the number of bytes hashed so far after each chunk (for a progress bar).
 */
export async function sha256File(path: string, onProgress?: (bytesHashed: number) => void): Promise<string> {
  const hash = createHash('sha256');
  let bytesHashed = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    bytesHashed += (chunk as Buffer).length;
    onProgress?.(bytesHashed);
  }
  return hash.digest('hex');
}
