import { existsSync } from 'node:fs';
import { SerialPort } from 'serialport';
import { describeOpenError } from '../../mcu/flasher/serial-link.ts';
import { LOG_LINE_MAX_CHARS } from '../../protocol/device-logs.ts';
import type { OpenSerialLines } from './board-capture.ts';

/** How often the port's device node is looked for: Linux tells a reader nothing when a USB board is unplugged. */
const PRESENCE_CHECK_MS = 1_000;

/**
 * A serial port read as text lines (LF or CRLF; bytes that are not UTF-8 become U+FFFD), with the
 * same exclusive lock as the flasher, so nothing else talks to the board behind the capture's
 * back. A line with no end in sight is cut at the ring's line length.
 */
export const openSerialLines: OpenSerialLines = async (path, baud, handlers) => {
  const port = new SerialPort({ path, baudRate: baud, autoOpen: false, lock: true });
  await new Promise<void>((resolve, reject) => {
    port.open((error) => (error ? reject(describeOpenError(path, error)) : resolve()));
  });
  const decoder = new TextDecoder('utf-8');
  let partial = '';
  let closing = false;
  let lost = false;
  const loseWith = (reason: string) => {
    if (closing || lost) return;
    lost = true;
    clearInterval(presence);
    if (partial) handlers.line(partial);
    partial = '';
    handlers.lost(reason);
    if (port.isOpen) port.close(() => {});
  };
  const presence = setInterval(() => {
    if (!existsSync(path)) loseWith(`${path} is gone (unplugged?)`);
  }, PRESENCE_CHECK_MS);
  presence.unref();
  port.on('data', (chunk: Buffer) => {
    const lines = (partial + decoder.decode(chunk, { stream: true })).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) handlers.line(line);
    if (partial.length >= LOG_LINE_MAX_CHARS) {
      handlers.line(partial);
      partial = '';
    }
  });
  port.on('error', (error: Error) => loseWith(`${path} failed: ${error.message}`));
  port.on('close', (error?: Error & { disconnected?: boolean }) => {
    if (error) loseWith(`${path} ${error.disconnected ? 'disconnected' : `closed: ${error.message}`}`);
  });
  return {
    async close() {
      if (lost) return;
      closing = true;
      clearInterval(presence);
      if (port.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
      if (partial) handlers.line(partial);
      partial = '';
    },
  };
};
