/**
 * The dashboard's configuration page in Chromium, against a real server: an operator sets fleet
 * and tag values (one secret), a device value from the device's page, unsets one, and sees a bad
 * name and a bad tag refused in the server's words; a viewer sees the list without any form.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigVariableList, DeviceConfig } from '../../protocol/api/config-variables.ts';
import type { CreatedDevice } from '../../protocol/api/devices.ts';
import { launchChromium } from '../support/chromium.ts';
import { sqliteBackend } from '../support/databases.ts';
import { layoutProblems } from '../support/page-layout.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const DIST_INDEX = fileURLToPath(new URL('../../server/web/dist/index.html', import.meta.url));
const SCREENSHOTS = fileURLToPath(new URL('../../test-results/dashboard/', import.meta.url));
/** A loaded two-core machine: patient waits, never timing-sensitive. */
const SLOW = 60_000;
const poll = <T>(read: () => Promise<T> | T) => expect.poll(read, { timeout: SLOW, interval: 100 });

describe('the configuration page in Chromium, against a real server', () => {
  let server: TestServer;
  let browser: Browser;
  let deviceId: string;

  const tokenFor = async (role: 'operator' | 'viewer') =>
    (await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', { name: `cfg-${role}`, role }))
      .body.token;

  const signedIn = async (token: string, width: number): Promise<Page> => {
    const page = await (await browser.newContext({ viewport: { width, height: 844 } })).newPage();
    await page.goto(server.httpUrl);
    await page.getByLabel('Operator token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('fleet-summary').waitFor({ timeout: SLOW });
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Configuration' }).click();
    await page.getByRole('heading', { name: 'Configuration' }).waitFor();
    return page;
  };

  const stored = async () =>
    (await server.api<ConfigVariableList>('GET', '/api/v1/config/variables')).body.variables.map(
      ({ name, scope, target, value, secret }) => ({ name, scope, target, value, secret }),
    );
  const effective = async () =>
    (await server.api<DeviceConfig>('GET', `/api/v1/devices/${deviceId}/config`)).body.variables;
  /** What the server answers to the same PUT: the words the page must show. */
  const serverRefusal = async (name: string, body: unknown) => {
    const answer = await server.api<{ message: string }>(
      'PUT',
      `/api/v1/config/variables/${encodeURIComponent(name)}`,
      body,
    );
    expect(answer.status).toBe(400);
    return answer.body.message;
  };

  beforeAll(async () => {
    if (!existsSync(DIST_INDEX)) {
      throw new Error(`the dashboard is not built (${DIST_INDEX} is missing): run npm run build:web`);
    }
    mkdirSync(SCREENSHOTS, { recursive: true });
    server = await startTestServer(sqliteBackend);
    const created = await server.api<CreatedDevice>('POST', '/api/v1/devices', {
      name: 'cfg-dash-pi',
      board: 'rpi-4b',
      tags: ['lab'],
    });
    expect(created.status).toBe(201);
    deviceId = created.body.device.id;
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it(
    'lets an operator set fleet, tag and secret values, a device value, unset one, and refuse bad input',
    async () => {
      const page = await signedIn(await tokenFor('operator'), 390);
      const form = page.getByRole('form', { name: 'Set a variable' });
      const rows = page.getByTestId('config-variable-row');
      const row = (scope: string, name: string) =>
        page.locator(`[data-testid="config-variable-row"][data-scope="${scope}"]`).filter({ hasText: name });
      await page.getByTestId('no-config-variables').waitFor();

      // A fleet value, then the same name for tag lab: the tag's wins on the device.
      await form.getByLabel('Name', { exact: true }).fill('LEVEL');
      await form.getByLabel('Value', { exact: true }).fill('info');
      await form.getByRole('button', { name: 'Set' }).click();
      await row('fleet', 'LEVEL').waitFor();
      expect(await form.getByTestId('variable-set').textContent()).toBe('LEVEL set for the fleet.');
      await form.getByLabel('Scope').selectOption('tag');
      await form.getByLabel('Tag', { exact: true }).fill('lab');
      await form.getByLabel('Name', { exact: true }).fill('LEVEL');
      await form.getByLabel('Value', { exact: true }).fill('debug');
      await form.getByRole('button', { name: 'Set' }).click();
      await row('tag:lab', 'LEVEL').waitFor();
      expect(await row('tag:lab', 'LEVEL').textContent()).toContain('debug');

      // A secret: typed unseen, shown as (secret), never given back.
      await form.getByLabel('Scope').selectOption('fleet');
      await form.getByLabel('Name', { exact: true }).fill('API_TOKEN');
      await form.getByLabel('secret', { exact: true }).check();
      expect(await form.getByLabel('Value', { exact: true }).getAttribute('type')).toBe('password');
      await form.getByLabel('Value', { exact: true }).fill('s3cr3t-value');
      await form.getByRole('button', { name: 'Set' }).click();
      await row('fleet', 'API_TOKEN').waitFor();
      expect(await row('fleet', 'API_TOKEN').locator('td').nth(1).textContent()).toBe('(secret)');
      expect(await page.content()).not.toContain('s3cr3t-value');
      expect(await stored()).toEqual([
        { name: 'API_TOKEN', scope: 'fleet', target: null, value: undefined, secret: true },
        { name: 'LEVEL', scope: 'fleet', target: null, value: 'info', secret: false },
        { name: 'LEVEL', scope: 'tag', target: 'lab', value: 'debug', secret: false },
      ]);
      expect(await effective()).toContainEqual({
        name: 'LEVEL',
        value: 'debug',
        secret: false,
        source: 'tag:lab',
      });

      // A name that is no environment variable: refused before the request, in the server's words.
      const badName = '9LIVES';
      await form.getByLabel('Name', { exact: true }).fill(badName);
      await form.getByLabel('Value', { exact: true }).fill('x');
      await form.getByRole('button', { name: 'Set' }).click();
      const alert = form.getByRole('alert');
      await poll(() => alert.textContent()).toBe(
        await serverRefusal(badName, { value: 'x', scope: 'fleet' }),
      );
      expect(await form.getByLabel('Name', { exact: true }).getAttribute('aria-invalid')).toBe('true');
      // A tag the server refuses: its own message is shown.
      await form.getByLabel('Scope').selectOption('tag');
      await form.getByLabel('Tag', { exact: true }).fill('no spaces');
      await form.getByLabel('Name', { exact: true }).fill('LEVEL');
      await form.getByRole('button', { name: 'Set' }).click();
      const tagRefusal = await serverRefusal('LEVEL', { value: 'x', scope: 'tag', target: 'no spaces' });
      expect(tagRefusal).toContain('no spaces is not a tag');
      await poll(() => alert.textContent()).toBe(tagRefusal);
      expect(await rows.count()).toBe(3);

      await page.screenshot({ path: `${SCREENSHOTS}config-390px.png`, fullPage: true });
      expect(await layoutProblems(page), 'configuration at 390 px').toEqual([]);

      // Unset the tag's value: the row goes, and the device falls back to the fleet's.
      page.once('dialog', (dialog) => void dialog.accept());
      await row('tag:lab', 'LEVEL').getByRole('button', { name: 'Unset' }).click();
      await row('tag:lab', 'LEVEL').waitFor({ state: 'detached' });
      expect(await page.getByTestId('variable-unset').textContent()).toBe('LEVEL unset for tag lab.');
      expect(await effective()).toContainEqual({
        name: 'LEVEL',
        value: 'info',
        secret: false,
        source: 'fleet',
      });

      // A device value, set with the same form on the device's page, listed here with a link back.
      await page.goto(`${server.httpUrl}/devices/${deviceId}`);
      const deviceForm = page.getByRole('form', { name: 'Set a device value' });
      await deviceForm.getByLabel('Name', { exact: true }).fill('LEVEL');
      await deviceForm.getByLabel('Value', { exact: true }).fill('trace');
      await deviceForm.getByRole('button', { name: 'Set for this device' }).click();
      const deviceRow = page.getByTestId('config-variables').locator('tr').filter({ hasText: 'LEVEL' });
      await poll(() => deviceRow.textContent()).toBe('LEVELtracedeviceUnset');
      expect(await deviceForm.getByTestId('variable-set').textContent()).toBe('LEVEL set for this device.');
      expect(await page.getByTestId('config-variables').textContent()).toContain('API_TOKEN(secret)fleet');
      await page.screenshot({ path: `${SCREENSHOTS}device-config-390px.png`, fullPage: true });
      expect(await layoutProblems(page), 'device page at 390 px').toEqual([]);
      await page
        .getByRole('navigation', { name: 'Main' })
        .getByRole('link', { name: 'Configuration' })
        .click();
      expect(await row(`device:${deviceId}`, 'LEVEL').textContent()).toContain('trace');
      await page.getByTestId('config-variable-list').getByRole('link', { name: deviceId }).click();
      await page.waitForURL(`**/devices/${deviceId}`);
      await page.getByRole('heading', { name: /cfg-dash-pi/ }).waitFor();
    },
    SLOW * 3,
  );

  it(
    'shows a viewer every variable and no form or unset button; the page fits 1280 px',
    async () => {
      const page = await signedIn(await tokenFor('viewer'), 1280);
      await poll(() => page.getByTestId('config-variable-row').count()).toBe(3);
      expect(await page.getByTestId('config-variable-list').textContent()).toContain('(secret)');
      expect(await page.getByRole('form').count()).toBe(0);
      expect(await page.getByRole('button', { name: 'Unset' }).count()).toBe(0);
      await page.getByText('You are signed in as a viewer').waitFor();
      await page.screenshot({ path: `${SCREENSHOTS}config-viewer-1280px.png`, fullPage: true });
      expect(await layoutProblems(page), 'configuration at 1280 px').toEqual([]);
    },
    SLOW * 2,
  );
});
