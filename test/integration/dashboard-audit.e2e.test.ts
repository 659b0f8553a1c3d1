import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedDevice } from '../../protocol/api/devices.ts';
import type { CreatedOperatorToken } from '../../protocol/api/session.ts';
import { CSRF_HEADER } from '../../protocol/api/session.ts';
import { launchChromium } from '../support/chromium.ts';
import { sqliteBackend } from '../support/databases.ts';
import { layoutProblems } from '../support/page-layout.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const DIST_INDEX = fileURLToPath(new URL('../../server/web/dist/index.html', import.meta.url));
const SCREENSHOTS = fileURLToPath(new URL('../../test-results/dashboard/', import.meta.url));

describe("the dashboard's audit page in Chromium, against a real server", () => {
  let server: TestServer;
  let browser: Browser;
  let ci: CreatedOperatorToken;
  let device: CreatedDevice;

  const signIn = async (page: Page, token: string) => {
    await page.goto(server.httpUrl);
    await page.getByLabel('Operator token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('fleet-summary').waitFor();
  };
  const rows = (page: Page) => page.getByTestId('audit-row');

  beforeAll(async () => {
    if (!existsSync(DIST_INDEX)) {
      throw new Error(`the dashboard is not built (${DIST_INDEX} is missing): run npm run build:web`);
    }
    mkdirSync(SCREENSHOTS, { recursive: true });
    server = await startTestServer(sqliteBackend);
    ci = (
      await server.api<CreatedOperatorToken>('POST', '/api/v1/operator-tokens', {
        name: 'ci',
        role: 'operator',
      })
    ).body;
    device = (await server.api<CreatedDevice>('POST', '/api/v1/devices', { name: 'hall-pi' }, ci.token)).body;
    expect((await server.api('POST', '/api/v1/rollouts/ro-missing/approve')).status).toBe(404);
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('lists who did what, newest first, with failures and their reasons, and filters by actor', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await signIn(page, server.adminToken);
    // A change made in this dashboard session is recorded as the session's token, marked as such.
    const made = await page.request.post(`${server.httpUrl}/api/v1/devices`, {
      headers: { [CSRF_HEADER]: '1' },
      data: { name: 'from-the-browser' },
    });
    expect(made.status()).toBe(201);

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit' }).click();
    await expect.poll(() => rows(page).count()).toBe(4);
    expect(await rows(page).evaluateAll((all) => all.map((row) => row.getAttribute('data-action')))).toEqual([
      'device.create',
      'rollout.approve',
      'device.create',
      'operator-token.create',
    ]);
    expect(await rows(page).nth(0).textContent()).toContain('admin (dashboard)');
    const failed = rows(page).nth(1);
    expect(await failed.getAttribute('data-outcome')).toBe('failed');
    expect(await failed.getByTestId('audit-outcome').textContent()).toBe(
      'failedrollout ro-missing not found',
    );
    const byCi = rows(page).nth(2);
    expect(await byCi.textContent()).toContain('ci');
    expect(await byCi.getByRole('link', { name: device.device.id }).getAttribute('href')).toBe(
      `/devices/${device.device.id}`,
    );

    await page.getByLabel('Actor').fill('ci');
    await page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => rows(page).count()).toBe(1);
    expect(new URL(page.url()).search).toBe('?actor=ci');
    await page.getByLabel('Period').selectOption('1h');
    await expect.poll(() => new URL(page.url()).search).toBe('?actor=ci&since=1h');
    expect(await rows(page).getAttribute('data-action')).toBe('device.create');
    await page.getByLabel('Actor').fill('nobody');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByTestId('no-audit-entries').waitFor();
    await context.close();
  });

  it('lays out at 1280 px and 390 px with no sideways scrolling or wrapped button', async () => {
    for (const width of [1280, 390]) {
      const context = await browser.newContext({ viewport: { width, height: 844 } });
      const page = await context.newPage();
      await signIn(page, ci.token);
      await page.goto(`${server.httpUrl}/audit`);
      await rows(page).first().waitFor();
      await page.screenshot({ path: `${SCREENSHOTS}audit-${width}px.png`, fullPage: true });
      expect(await layoutProblems(page), `audit at ${width} px`).toEqual([]);
      await context.close();
    }
  });
});
