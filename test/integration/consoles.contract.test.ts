import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSOLE_MAX_BYTES, consolePath } from '../../protocol/device-console.ts';
import type { ConsoleSummary } from '../../protocol/api/consoles.ts';
import { CONSOLES_KEPT_PER_DEVICE } from '../../server/consoles/console.service.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { databaseBackends } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const CLI = new URL('../../cli/boardfleet.js', import.meta.url).pathname;

interface Device {
  id: string;
  secret: string;
}

describe.each(databaseBackends)('device consoles on $name', (backend) => {
  let server: TestServer;
  let alpha: Device;
  let beta: Device;
  let viewerToken: string;

  const basic = (device: Device) =>
    `Basic ${Buffer.from(`${device.id}:${device.secret}`).toString('base64')}`;
  const upload = (
    path: string,
    body: string | Buffer,
    authorization: string,
    contentType = 'text/plain; charset=utf-8',
  ) =>
    fetch(`${server.httpUrl}${path}`, {
      method: 'PUT',
      headers: { authorization, 'content-type': contentType },
      body,
    });
  const read = async (device: Device, artifact: string, version: string, token = server.adminToken) => {
    const response = await fetch(`${server.httpUrl}${consolePath(device.id, artifact, version)}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return { status: response.status, text: await response.text() };
  };
  const list = async (device: Device) =>
    (await server.api<{ consoles: ConsoleSummary[] }>('GET', `/api/v1/devices/${device.id}/consoles`)).body
      .consoles;
  const createDevice = async (name: string): Promise<Device> => {
    const created = await server.api<{ device: DeviceRecord; secret: string }>('POST', '/api/v1/devices', {
      name,
    });
    return { id: created.body.device.id, secret: created.body.secret };
  };

  beforeAll(async () => {
    server = await startTestServer(backend);
    alpha = await createDevice('alpha');
    beta = await createDevice('beta');
    viewerToken = (
      await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', {
        name: 'reader',
        role: 'viewer',
      })
    ).body.token;
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it('keeps what a device uploads per artifact version, for operators to list and read', async () => {
    const first = await upload(
      consolePath(alpha.id, 'http-hello', '2.0.0'),
      'booting\nhttp-hello 2.0.0 listening on 8080\n',
      basic(alpha),
    );
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ artifact: 'http-hello', version: '2.0.0', size: 43 });
    await upload(consolePath(alpha.id, 'http-hello', '3.0.0'), 'booting\nsegfault\n', basic(alpha));

    expect(await read(alpha, 'http-hello', '2.0.0', viewerToken)).toEqual({
      status: 200,
      text: 'booting\nhttp-hello 2.0.0 listening on 8080\n',
    });
    const consoles = await list(alpha);
    expect(consoles.map(({ artifact, version, size }) => ({ artifact, version, size }))).toEqual([
      { artifact: 'http-hello', version: '3.0.0', size: 17 },
      { artifact: 'http-hello', version: '2.0.0', size: 43 },
    ]);
    expect(consoles[0]?.updatedAt).toBeGreaterThanOrEqual(consoles[1]?.updatedAt ?? Infinity);
    expect(await list(beta)).toEqual([]);
  });

  it('replaces the stored console with each upload', async () => {
    const path = consolePath(alpha.id, 'replaced', '1.0.0');
    await upload(path, 'first capture\n', basic(alpha));
    await upload(path, 'second capture, the whole tail again\n', basic(alpha));
    expect((await read(alpha, 'replaced', '1.0.0')).text).toBe('second capture, the whole tail again\n');
    expect((await list(alpha)).filter((entry) => entry.artifact === 'replaced')).toHaveLength(1);
  });

  it('keeps the tail of a long console from its first whole line, without NUL characters', async () => {
    const lines = Array.from(
      { length: 6000 },
      (_, i) => `line ${String(i).padStart(5, '0')} ${'x'.repeat(50)}\n`,
    );
    const body = Buffer.concat([Buffer.from(lines.join('')), Buffer.from('last\u0000 line\n')]);
    expect(body.length).toBeGreaterThan(CONSOLE_MAX_BYTES);
    const response = await upload(consolePath(alpha.id, 'chatty', '1.0.0'), body, basic(alpha));
    expect(response.status).toBe(200);
    const { text } = await read(alpha, 'chatty', '1.0.0');
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(CONSOLE_MAX_BYTES);
    expect(Buffer.byteLength(text)).toBeGreaterThan(CONSOLE_MAX_BYTES - 100);
    expect(text).toMatch(/^line \d{5} x{50}\n/);
    expect(text.endsWith('line 05999 ' + 'x'.repeat(50) + '\nlast line\n')).toBe(true);
    expect(text).not.toContain('line 00000');
    const summary = (await list(alpha)).find((entry) => entry.artifact === 'chatty');
    expect(summary?.size).toBe(Buffer.byteLength(text));
  });

  it.each([
    ['no credentials', () => '', 401, () => 'uploading a console needs the device credentials (HTTP Basic)'],
    ['a wrong secret', () => basic({ id: alpha.id, secret: 'bfd_wrong' }), 401, () => 'device credentials'],
    ['an operator token', () => `Bearer ${server.adminToken}`, 401, () => 'device credentials'],
    [
      "another device's credentials",
      () => basic(beta),
      403,
      () => `device ${beta.id} may upload only its own consoles, not ${alpha.id}'s`,
    ],
  ])('refuses an upload with %s and stores nothing', async (_, authorization, status, message) => {
    const response = await upload(consolePath(alpha.id, 'intruder', '1.0.0'), 'forged\n', authorization());
    expect(response.status).toBe(status);
    expect(((await response.json()) as { message: string }).message).toContain(message());
    expect((await list(alpha)).map((entry) => entry.artifact)).not.toContain('intruder');
  });

  it.each([
    [
      'a bad artifact name',
      consolePath('ALPHA', 'Bad Name', '1.0.0'),
      'text/plain',
      'artifact: names are lower-case',
    ],
    [
      'a version that is not semantic',
      consolePath('ALPHA', 'ok', 'latest'),
      'text/plain',
      'version: must be a semantic version',
    ],
    [
      'a JSON body',
      consolePath('ALPHA', 'ok', '1.0.0'),
      'application/json',
      'send the console as text/plain',
    ],
  ])('answers 400 to %s', async (_, template, contentType, message) => {
    const path = template.replace('ALPHA', alpha.id);
    const response = await upload(
      path,
      contentType === 'application/json' ? '{"a":1}' : 'x\n',
      basic(alpha),
      contentType,
    );
    expect(response.status).toBe(400);
    expect(((await response.json()) as { message: string }).message).toContain(message);
    expect((await list(alpha)).map((entry) => entry.artifact)).not.toContain('ok');
  });

  it('refuses a revoked device', async () => {
    const gamma = await createDevice('gamma');
    expect((await upload(consolePath(gamma.id, 'app', '1.0.0'), 'before\n', basic(gamma))).status).toBe(200);
    await server.api('POST', `/api/v1/devices/${gamma.id}/revoke`);
    expect((await upload(consolePath(gamma.id, 'app', '1.0.0'), 'after\n', basic(gamma))).status).toBe(401);
    expect((await read(gamma, 'app', '1.0.0')).text).toBe('before\n');
  });

  it('answers 404 for an unknown device or a console never uploaded, and 401 without a token', async () => {
    expect(await server.api('GET', '/api/v1/devices/dev-nope/consoles')).toMatchObject({
      status: 404,
      body: { message: 'device dev-nope not found' },
    });
    expect(await read(beta, 'http-hello', '9.9.9')).toMatchObject({ status: 404 });
    expect(JSON.parse((await read(beta, 'http-hello', '9.9.9')).text)).toMatchObject({
      message: `the console of http-hello 9.9.9 on device ${beta.id} not found`,
    });
    expect((await fetch(`${server.httpUrl}/api/v1/devices/${alpha.id}/consoles`)).status).toBe(401);
  });

  it(`keeps the ${CONSOLES_KEPT_PER_DEVICE} most recently updated consoles of a device`, async () => {
    const delta = await createDevice('delta');
    for (let i = 0; i <= CONSOLES_KEPT_PER_DEVICE; i++) {
      await upload(consolePath(delta.id, 'app', `1.0.${i}`), `version ${i}\n`, basic(delta));
      // Distinct update times, so "oldest" is well defined.
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const versions = (await list(delta)).map((entry) => entry.version);
    expect(versions).toHaveLength(CONSOLES_KEPT_PER_DEVICE);
    expect(versions).not.toContain('1.0.0');
    expect(versions[0]).toBe(`1.0.${CONSOLES_KEPT_PER_DEVICE}`);
  });

  it('lists and prints consoles with `boardfleet devices console`', async () => {
    const env = { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: viewerToken };
    const cli = (...args: string[]) =>
      promisify(execFile)(process.execPath, [CLI, 'devices', 'console', ...args], { env });

    const { stdout: table } = await cli(alpha.id);
    expect(table).toMatch(/^ARTIFACT\s+VERSION\s+SIZE\s+UPDATED$/m);
    expect(table).toMatch(/^http-hello\s+2\.0\.0\s+43 B\s+\d+s ago$/m);
    const { stdout: json } = await cli(alpha.id, '--json');
    expect(JSON.parse(json)).toEqual(await list(alpha));

    expect((await cli(alpha.id, 'http-hello', '2.0.0')).stdout).toBe(
      'booting\nhttp-hello 2.0.0 listening on 8080\n',
    );
    // Without a version: the artifact's newest capture.
    expect((await cli(alpha.id, 'http-hello')).stdout).toBe('booting\nsegfault\n');

    const missing = await cli(alpha.id, 'http-hello', '9.9.9').catch(
      (error: { code: number; stderr: string }) => error,
    );
    expect(missing).toMatchObject({ code: 1 });
    expect((missing as { stderr: string }).stderr).toContain(
      `the console of http-hello 9.9.9 on device ${alpha.id} not found`,
    );
    const never = await cli(beta.id, 'http-hello').catch((error: { code: number; stderr: string }) => error);
    expect((never as { stderr: string }).stderr).toContain(
      `device ${beta.id} has uploaded no console of http-hello (it has: none)`,
    );
  });
});
