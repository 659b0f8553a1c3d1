import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../support/chromium.ts';
import { sqliteBackend } from '../support/databases.ts';
import { type ServerProcess, startServerProcess } from '../support/server-process.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const DIST_INDEX = fileURLToPath(new URL('../../server/web/dist/index.html', import.meta.url));
const MIB = 1024 * 1024;

/** A device-creation body of about `bytes` bytes: valid JSON, with a name far too long to be accepted. */
const deviceBodyOfSize = (bytes: number) => JSON.stringify({ name: 'n'.repeat(bytes - 11) });

async function send(
  url: string,
  init: { method?: string; body?: string; token?: string; contentType?: string } = {},
): Promise<{ status: number; headers: Headers; body: { code?: string; message?: string } | string }> {
  const response = await fetch(url, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: {
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      ...(init.body === undefined ? {} : { 'content-type': init.contentType ?? 'application/json' }),
    },
    body: init.body,
  });
  const text = await response.text();
  const isJson = response.headers.get('content-type')?.includes('json') ?? false;
  return { status: response.status, headers: response.headers, body: isJson ? JSON.parse(text) : text };
}

describe('request bodies the server cannot take, in a server process', () => {
  let server: ServerProcess;
  /** What the process printed (stdout and stderr) after `mark` was taken. */
  let mark = 0;
  const printedSinceMark = () =>
    server
      .output()
      .slice(mark)
      .split('\n')
      .filter((line) => line.trim() !== '');

  /** Waits for the log line about `path`, then checks that it is all the process printed. */
  const expectOneStructuredLine = async (path: string) => {
    await eventually('the log line of the refused request', () =>
      printedSinceMark().some((line) => line.includes(path)),
    );
    // A stack trace would have been written together with the answer: nothing more comes later.
    await server.api('GET', '/healthz');
    const printed = printedSinceMark();
    const aboutTheRequest = printed.filter((line) => line.includes(path));
    expect(aboutTheRequest).toHaveLength(1);
    for (const line of printed)
      expect(() => JSON.parse(line) as unknown, `not a pino line: ${line}`).not.toThrow();
    return JSON.parse(aboutTheRequest[0] ?? '{}') as Record<string, unknown>;
  };

  beforeAll(async () => {
    server = await startServerProcess(sqliteBackend);
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('refuses an unauthenticated JSON body over the limit with 413 naming the limit and one log line', async () => {
    mark = server.output().length;
    const answer = await send(`${server.httpUrl}/api/v1/devices`, { body: deviceBodyOfSize(2 * MIB) });
    expect(answer.status).toBe(413);
    expect(answer.body).toMatchObject({ code: 'body-too-large' });
    expect((answer.body as { message: string }).message).toContain('1024 KiB');
    const line = await expectOneStructuredLine('/api/v1/devices');
    expect(line).toMatchObject({ level: 40, status: 413, code: 'body-too-large' });
    expect((await send(`${server.httpUrl}/healthz`)).status).toBe(200);
  });

  it('refuses malformed JSON with 400 and one log line', async () => {
    mark = server.output().length;
    const answer = await send(`${server.httpUrl}/api/v1/operator-tokens`, { body: '{"name": "ci",' });
    expect(answer.status).toBe(400);
    expect((answer.body as { message: string }).message).toMatch(/JSON/);
    const line = await expectOneStructuredLine('/api/v1/operator-tokens');
    expect(line).toMatchObject({ level: 40, status: 400 });
    expect((await send(`${server.httpUrl}/healthz`)).status).toBe(200);
  });

  it('reads a body under the limit and answers on its content', async () => {
    const answer = await send(`${server.httpUrl}/api/v1/devices`, {
      body: deviceBodyOfSize(900 * 1024),
      token: server.adminToken,
    });
    expect(answer).toMatchObject({ status: 400, body: { code: 'invalid-request' } });
    expect((answer.body as { message: string }).message).toContain('name:');
  });

  it('does not parse form-encoded bodies', async () => {
    const answer = await send(`${server.httpUrl}/api/v1/operator-tokens`, {
      body: 'name=ci&role=admin',
      contentType: 'application/x-www-form-urlencoded',
      token: server.adminToken,
    });
    expect(answer).toMatchObject({ status: 400, body: { code: 'invalid-request' } });
  });
});

describe('HTTP hardening of an in-process server', () => {
  let server: TestServer;
  let closed: TestServer;
  let viewerToken: string;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend, { BOARDFLEET_HTTP_JSON_LIMIT_KIB: '4' });
    closed = await startTestServer(sqliteBackend, {
      BOARDFLEET_METRICS_PUBLIC: '0',
      BOARDFLEET_API_DOCS_PUBLIC: '0',
    });
    viewerToken = (
      await closed.api<{ token: string }>('POST', '/api/v1/operator-tokens', {
        name: 'prometheus',
        role: 'viewer',
      })
    ).body.token;
  });

  afterAll(async () => {
    await server?.dispose();
    await closed?.dispose();
  });

  it('takes its JSON body limit from BOARDFLEET_HTTP_JSON_LIMIT_KIB', async () => {
    const over = await send(`${server.httpUrl}/api/v1/devices`, {
      body: deviceBodyOfSize(5 * 1024),
      token: server.adminToken,
    });
    expect(over).toMatchObject({ status: 413, body: { code: 'body-too-large' } });
    expect((over.body as { message: string }).message).toContain('4 KiB');
    const under = await send(`${server.httpUrl}/api/v1/devices`, {
      body: deviceBodyOfSize(3 * 1024),
      token: server.adminToken,
    });
    expect(under.status).toBe(400);
  });

  describe('security headers', () => {
    const requests: Array<[string, string, { body?: string; auth?: boolean }]> = [
      ['the dashboard', '/', {}],
      ['a dashboard route', '/devices/dev-1', {}],
      ['the health check', '/healthz', {}],
      ['the metrics', '/metrics', {}],
      ['the API docs', '/api/docs', {}],
      ['the OpenAPI document', '/api/docs/openapi.json', {}],
      ['an API call without a token', '/api/v1/devices', {}],
      ['an API call', '/api/v1/devices', { auth: true }],
      ['an unknown API route', '/api/v1/nope', { auth: true }],
      ['a body over the limit', '/api/v1/devices', { body: deviceBodyOfSize(8 * 1024) }],
      ['malformed JSON', '/api/v1/devices', { body: '{' }],
    ];

    it.each(requests)('are on the answer to %s', async (_what, path, request) => {
      const answer = await send(`${server.httpUrl}${path}`, {
        body: request.body,
        token: request.auth ? server.adminToken : undefined,
      });
      expect(answer.headers.get('x-powered-by')).toBeNull();
      expect(answer.headers.get('x-content-type-options')).toBe('nosniff');
      expect(answer.headers.get('x-frame-options')).toBe('DENY');
      expect(answer.headers.get('referrer-policy')).toBe('no-referrer');
      expect(answer.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    });

    it('give the dashboard a policy that runs only its own scripts and styles', async () => {
      const policy = (await send(`${server.httpUrl}/`)).headers.get('content-security-policy') ?? '';
      expect(policy).toContain("default-src 'self'");
      expect(policy).toContain("script-src 'self'");
      expect(policy).toContain("object-src 'none'");
      expect(policy).not.toContain('unsafe-inline');
      expect(policy).not.toContain('unsafe-eval');
    });
  });

  describe('metrics and API docs', () => {
    it('are open by default', async () => {
      expect((await send(`${server.httpUrl}/metrics`)).status).toBe(200);
      expect((await send(`${server.httpUrl}/api/docs`)).status).toBe(200);
      expect((await send(`${server.httpUrl}/api/docs/openapi.json`)).status).toBe(200);
    });

    it.each(['/metrics', '/api/docs', '/api/docs/openapi.json', '/api/docs-yaml'])(
      'need an operator token for %s when configured closed',
      async (path) => {
        expect((await send(`${closed.httpUrl}${path}`)).status).toBe(401);
        expect((await send(`${closed.httpUrl}${path}`, { token: 'bft_wrong' })).status).toBe(401);
        expect((await send(`${closed.httpUrl}${path}`, { token: viewerToken })).status).toBe(200);
      },
    );

    it('still answers /healthz without a token when metrics are closed', async () => {
      expect((await send(`${closed.httpUrl}/healthz`)).status).toBe(200);
    });
  });

  describe('in Chromium', () => {
    let browser: Browser;

    beforeAll(async () => {
      if (!existsSync(DIST_INDEX)) {
        throw new Error(`the dashboard is not built (${DIST_INDEX} is missing): run npm run build:web`);
      }
      browser = await launchChromium();
    });

    afterAll(async () => {
      await browser?.close();
    });

    /** Opens `path` and returns the page with every Content-Security-Policy violation it reported. */
    const open = async (path: string): Promise<{ page: Page; violations: string[] }> => {
      const page = await browser.newPage();
      const violations: string[] = [];
      page.on('console', (message) => {
        if (message.text().includes('Content Security Policy')) violations.push(message.text());
      });
      await page.goto(`${server.httpUrl}${path}`);
      return { page, violations };
    };

    it('shows the dashboard sign-in with no policy violation', async () => {
      const { page, violations } = await open('/');
      await page.getByLabel('Operator token').fill(server.adminToken);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await expect
        .poll(() => page.getByTestId('operator').textContent(), { timeout: 30_000 })
        .toContain('admin');
      await page.getByTestId('fleet-summary').waitFor();
      expect(violations).toEqual([]);
      await page.close();
    });

    it('shows the API docs with no policy violation', async () => {
      const { page, violations } = await open('/api/docs');
      await expect
        .poll(() => page.locator('.swagger-ui .info .title').textContent(), { timeout: 30_000 })
        .toContain('Boardfleet');
      expect(violations).toEqual([]);
      await page.close();
    });

    it('cannot be framed by another page', async () => {
      const page = await browser.newPage();
      await page.setContent(`<iframe src="${server.httpUrl}/"></iframe>`);
      const frame = await (await page.waitForSelector('iframe')).contentFrame();
      await expect.poll(async () => frame?.url() ?? '', { timeout: 10_000 }).not.toBe('');
      expect(
        await frame
          ?.locator('#app')
          .count()
          .catch(() => 0),
      ).toBe(0);
      await page.close();
    });
  });
});
