import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CONSOLE_MAX_BYTES, consolePath } from '../../protocol/device-console.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { sqliteBackend } from '../../test/support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../../test/support/test-server.ts';
import { ConsoleUploader, type ConsoleUploaderOptions } from './console-uploader.ts';

describe('ConsoleUploader against a real server', () => {
  let server: TestServer;
  let device: { deviceId: string; secret: string };
  let dir: string;
  const uploaders: ConsoleUploader[] = [];

  /** Counts the uploads that reach the server; `failFirst` makes that many fail as a dropped network would. */
  const countingFetch = (failFirst = 0) => {
    const calls = { attempts: 0, uploads: 0 };
    const wrapped: typeof fetch = async (input, init) => {
      calls.attempts++;
      if (calls.attempts <= failFirst) throw new TypeError('fetch failed (connection refused)');
      const response = await fetch(input, init);
      if (response.ok) calls.uploads++;
      return response;
    };
    return { calls, fetch: wrapped };
  };
  const uploader = (options: Partial<ConsoleUploaderOptions> = {}) => {
    const created = new ConsoleUploader({
      server: server.httpUrl,
      ...device,
      intervalMs: 60_000,
      ...options,
    });
    uploaders.push(created);
    return created;
  };
  const stored = async (artifact: string, version: string) => {
    const response = await fetch(`${server.httpUrl}${consolePath(device.deviceId, artifact, version)}`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    return response.status === 200 ? response.text() : null;
  };

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    const created = await server.api<{ device: DeviceRecord; secret: string }>('POST', '/api/v1/devices', {
      name: 'vm-host',
    });
    device = { deviceId: created.body.device.id, secret: created.body.secret };
    dir = mkdtempSync(join(tmpdir(), 'console-uploader-'));
  });
  afterEach(async () => {
    await Promise.all(uploaders.splice(0).map((each) => each.stop()));
  });
  afterAll(async () => {
    await server?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('uploads on flush, and only when the console changed', async () => {
    const file = join(dir, 'flush.log');
    const { calls, fetch } = countingFetch();
    const consoles = uploader({ fetch });
    consoles.watch('http-hello', '2.0.0', file);
    await consoles.flush('http-hello', '2.0.0');
    expect(calls.attempts).toBe(0);
    expect(await stored('http-hello', '2.0.0')).toBeNull();

    writeFileSync(file, 'http-hello 2.0.0 listening on 8080\n');
    await consoles.flush('http-hello', '2.0.0');
    expect(await stored('http-hello', '2.0.0')).toBe('http-hello 2.0.0 listening on 8080\n');
    await consoles.flush('http-hello', '2.0.0');
    expect(calls.uploads).toBe(1);

    appendFileSync(file, 'GET / 200\n');
    await consoles.flush('http-hello', '2.0.0');
    expect(await stored('http-hello', '2.0.0')).toBe('http-hello 2.0.0 listening on 8080\nGET / 200\n');
    expect(calls.uploads).toBe(2);
  });

  it('uploads a growing console on its own every interval', async () => {
    const file = join(dir, 'interval.log');
    const consoles = uploader({ intervalMs: 200 });
    consoles.watch('ticker', '1.0.0', file);
    for (let i = 0; i < 3; i++) {
      appendFileSync(file, `tick ${i}\n`);
      await eventually(
        `tick ${i} on the server`,
        async () => (await stored('ticker', '1.0.0'))?.includes(`tick ${i}\n`),
        20_000,
      );
    }
    expect(await stored('ticker', '1.0.0')).toBe('tick 0\ntick 1\ntick 2\n');
  });

  it('sends only the tail of a console longer than the server keeps', async () => {
    const file = join(dir, 'long.log');
    const line = (i: number) => `line ${String(i).padStart(6, '0')} ${'y'.repeat(40)}\n`;
    writeFileSync(file, Array.from({ length: 10_000 }, (_, i) => line(i)).join(''));
    const consoles = uploader();
    consoles.watch('chatty', '1.0.0', file);
    await consoles.flush('chatty', '1.0.0');
    const text = (await stored('chatty', '1.0.0')) ?? '';
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(CONSOLE_MAX_BYTES);
    expect(Buffer.byteLength(text)).toBeGreaterThan(CONSOLE_MAX_BYTES - 100);
    expect(text.endsWith(line(9999))).toBe(true);
    expect(text).not.toContain(line(0));
  });

  it('logs a failed upload, never throws it, and retries on the next tick', async () => {
    const file = join(dir, 'retry.log');
    writeFileSync(file, 'crashed: segfault at 0\n');
    const logged: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) });
    const { calls, fetch } = countingFetch(2);
    const consoles = uploader({ fetch, logger, intervalMs: 200 });
    consoles.watch('crashy', '3.0.0', file);
    await expect(consoles.flush('crashy', '3.0.0')).resolves.toBeUndefined();
    expect(logged.join('')).toContain(
      'uploading the console of crashy 3.0.0 failed (will retry): fetch failed (connection refused)',
    );
    await eventually(
      'the retried upload',
      async () => (await stored('crashy', '3.0.0')) ?? undefined,
      20_000,
    );
    expect(await stored('crashy', '3.0.0')).toBe('crashed: segfault at 0\n');
    expect(calls.attempts).toBeGreaterThanOrEqual(3);
    // A streak of failures is one warning, not one per try.
    expect(logged.filter((line) => line.includes('failed (will retry)'))).toHaveLength(1);
  });

  it('logs what the server refused, e.g. a revoked credential', async () => {
    const file = join(dir, 'refused.log');
    writeFileSync(file, 'hello\n');
    const logged: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) });
    const consoles = uploader({ secret: 'bfd_not-the-secret', logger });
    consoles.watch('refused', '1.0.0', file);
    await consoles.flush('refused', '1.0.0');
    expect(logged.join('')).toContain('uploading the console of refused 1.0.0 failed (will retry): HTTP 401');
    expect(await stored('refused', '1.0.0')).toBeNull();
  });

  it('uploads the last of a console on unwatch, then leaves it alone', async () => {
    const file = join(dir, 'unwatch.log');
    const { calls, fetch } = countingFetch();
    const consoles = uploader({ fetch, intervalMs: 100 });
    consoles.watch('old', '1.0.0', file);
    writeFileSync(file, 'stopping\npowered off\n');
    await consoles.unwatch('old', '1.0.0');
    expect(await stored('old', '1.0.0')).toBe('stopping\npowered off\n');
    appendFileSync(file, 'written after unwatch\n');
    await new Promise((resolve) => setTimeout(resolve, 500));
    await consoles.flush('old', '1.0.0');
    expect(calls.uploads).toBe(1);
    expect(await stored('old', '1.0.0')).toBe('stopping\npowered off\n');
  });

  it('uploads what changed since the last tick when it stops', async () => {
    const file = join(dir, 'stop.log');
    const consoles = uploader();
    consoles.watch('stopping', '1.0.0', file);
    writeFileSync(file, 'the agent is shutting down\n');
    await consoles.stop();
    expect(await stored('stopping', '1.0.0')).toBe('the agent is shutting down\n');
  });
});
