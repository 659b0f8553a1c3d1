import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { AgentUnderTest } from '../support/agent-fleet.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { sqliteBackend } from '../support/databases.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const DIST_INDEX = fileURLToPath(new URL('../../server/web/dist/index.html', import.meta.url));
const SCREENSHOTS = fileURLToPath(new URL('../../test-results/dashboard/', import.meta.url));
const BOARD = 'rpi-4b';
const TAG = 'dash';
const FLEET_SIZE = 4;
/** Waits on real agents and a loaded two-core machine: patient, never timing-sensitive. */
const SLOW = 90_000;

describe('the dashboard in Chromium, against a real server and agent processes', () => {
  let server: TestServer;
  let browser: Browser;
  let adminContext: BrowserContext;
  let page: Page;
  let provisioningToken: string;
  let releaseV1: string;
  let releaseV2: string;
  let rolloutId = '';
  const agents: AgentUnderTest[] = [];
  const scratch = mkdtempSync(join(tmpdir(), 'boardfleet-dashboard-e2e-'));

  const screenshot = (target: Page, name: string) =>
    target.screenshot({ path: `${SCREENSHOTS}${name}.png`, fullPage: true });

  const signIn = async (target: Page, token: string) => {
    await target.goto(server.httpUrl);
    await target.getByLabel('Operator token').fill(token);
    await target.getByRole('button', { name: 'Sign in' }).click();
  };

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `${CHROMIUM} is missing: install the Debian package chromium (apt-get install chromium)`,
      );
    }
    if (!existsSync(DIST_INDEX)) {
      throw new Error(`the dashboard is not built (${DIST_INDEX} is missing): run npm run build:web`);
    }
    mkdirSync(SCREENSHOTS, { recursive: true });
    // A real image build takes minutes; one whose cache folder cannot be made (its parent is a
    // file) fails at its first step, which is all the builds page needs to show a live log and state.
    writeFileSync(join(scratch, 'not-a-directory'), '');
    server = await startTestServer(sqliteBackend, {
      BOARDFLEET_BUILD_CACHE: join(scratch, 'not-a-directory', 'cache'),
    });
    provisioningToken = (
      await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'dashboard-e2e' })
    ).body.token;
    releaseV1 = (await releaseAppBundle(server, BOARD, { name: 'app', version: '1.0.0' })).release;
    releaseV2 = (await releaseAppBundle(server, BOARD, { name: 'app', version: '2.0.0' })).release;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
    adminContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await adminContext.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await Promise.all(agents.map((agent) => agent.dispose()));
    await server?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('signs in with a token, shows the role, and shows agents coming online without a reload', async () => {
    await signIn(page, server.adminToken);
    await expect.poll(() => page.getByTestId('operator').textContent()).toContain('admin');
    await page.getByTestId('fleet-summary').waitFor();
    expect(await page.getByTestId('device-row').count()).toBe(0);
    expect(await page.getByTestId('count-total').textContent()).toBe('0');

    for (let index = 0; index < FLEET_SIZE; index++) {
      const agent = new AgentUnderTest(`${TAG}-${index}`, [
        '--server',
        server.httpUrl,
        '--provisioning-token',
        provisioningToken,
        '--board',
        BOARD,
        '--tag',
        TAG,
        '--heartbeat',
        '1',
        '--keepalive',
        '5',
      ]);
      agents.push(agent.start());
    }
    // The page is not reloaded: the live stream's presence events bring the devices in.
    await expect
      .poll(() => page.locator('[data-testid="device-row"] [data-testid="online-badge"]').allTextContents(), {
        timeout: SLOW,
      })
      .toEqual(Array(FLEET_SIZE).fill('online'));
    await expect.poll(() => page.getByTestId('count-online').textContent(), { timeout: SLOW }).toBe('4');
    expect(await page.getByTestId('count-total').textContent()).toBe('4');

    // Search narrows the table on the server: one device by its name.
    await page.getByLabel('Search').fill(`${TAG}-2`);
    await page.getByLabel('Search').press('Enter');
    await expect.poll(() => page.getByTestId('device-row').count()).toBe(1);
    expect(await page.getByTestId('device-row').first().textContent()).toContain(`${TAG}-2`);
    await page.goto(`${server.httpUrl}/`);
    await expect.poll(() => page.getByTestId('device-row').count()).toBe(FLEET_SIZE);
    await screenshot(page, 'fleet');

    const phone = await adminContext.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(server.httpUrl);
    await phone.getByTestId('fleet-summary').waitFor();
    await expect.poll(() => phone.getByTestId('device-row').count()).toBe(FLEET_SIZE);
    // Readable at phone width: nothing wider than the screen but the table's own scroller.
    expect(await phone.evaluate<number>('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
    await screenshot(phone, 'fleet-390px');
    await phone.close();
  }, 180_000);

  it('opens a device and draws its health over the chosen time range', async () => {
    await page.getByTestId('device-row').first().getByRole('link').click();
    await page.getByRole('heading', { name: /dash-/ }).waitFor();
    const chart = page.getByTestId('health-chart').filter({ hasText: 'CPU load' });
    // Heartbeats arrive every second and the chart follows them live.
    await expect
      .poll(async () => Number(await chart.getAttribute('data-points')), { timeout: SLOW })
      .toBeGreaterThanOrEqual(3);
    expect(await chart.locator('canvas').count()).toBe(1);
    expect(await page.getByTestId('health-chart').count()).toBe(5);
    await page.getByLabel('Time range').selectOption({ label: 'last 15 minutes' });
    await expect.poll(async () => Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(3);
    await screenshot(page, 'device');
  }, 120_000);

  it('creates a two-wave rollout through the form, watches wave 1 complete, pauses, resumes and sees it finish', async () => {
    await page.getByRole('link', { name: 'Rollouts' }).click();
    const form = page.getByRole('form', { name: 'New rollout' });
    await form.getByLabel('Release').selectOption(releaseV1);
    await form.getByLabel('Target tags (comma-separated)').fill(TAG);
    const wave1 = form.getByRole('group', { name: 'Wave 1' });
    const wave2 = form.getByRole('group', { name: 'Wave 2' });
    await wave1.getByLabel('Reach % of target').fill('50');
    await wave1.getByLabel('Soak (s)').fill('2');
    await wave2.getByLabel('Reach % of target').fill('100');
    await wave2.getByLabel('Soak (s)').fill('2');
    // The second wave waits for an approval: the test pauses and resumes between the waves, not in a race.
    await wave2.getByLabel('Needs approval').check();
    expect(await form.getByRole('button', { name: 'Start rollout' }).isDisabled()).toBe(true);
    await form.getByRole('button', { name: 'Preview' }).click();
    await expect
      .poll(() => page.getByTestId('preview-wave').allTextContents())
      .toEqual(['wave 1: 2 device(s)', 'wave 2: 2 device(s)']);
    await screenshot(page, 'rollout-form');
    await form.getByRole('button', { name: 'Start rollout' }).click();
    await page.waitForURL(/\/rollouts\/ro/);
    rolloutId = decodeURIComponent(new URL(page.url()).pathname.split('/')[2] ?? '');

    const waves = page.getByTestId('wave-progress');
    const state = page.getByTestId('rollout-state');
    await expect
      .poll(() => waves.nth(0).getAttribute('data-wave-state'), { timeout: SLOW })
      .toBe('succeeded');
    expect(await waves.nth(0).getAttribute('data-committed')).toBe('2');
    await expect.poll(() => waves.nth(1).getAttribute('data-wave-state')).toBe('awaiting-approval');
    expect(await state.textContent()).toBe('running');

    await page.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(() => state.textContent()).toBe('paused');
    expect((await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${rolloutId}`)).body.state).toBe(
      'paused',
    );
    expect(await page.getByRole('button', { name: 'Pause' }).isDisabled()).toBe(true);
    await screenshot(page, 'rollout-paused');

    await page.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => state.textContent()).toBe('running');
    await page.getByRole('button', { name: 'Approve' }).click();
    await expect.poll(() => state.textContent(), { timeout: SLOW }).toBe('completed');
    expect(
      await waves.evaluateAll((items) => items.map((item) => item.getAttribute('data-committed'))),
    ).toEqual(['2', '2']);
    const done = (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${rolloutId}`)).body;
    expect(done.devices.map((device) => device.state)).toEqual(Array(FLEET_SIZE).fill('committed'));
    expect(done.log.map((entry) => entry.message)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^paused by /), expect.stringMatching(/^resumed by /)]),
    );
    await screenshot(page, 'rollout-completed');

    // The device page now shows the version it runs and the deployment in its history.
    const devices = (await server.api<{ devices: DeviceRecord[] }>('GET', `/api/v1/devices?tag=${TAG}`)).body
      .devices;
    await page.goto(`${server.httpUrl}/devices/${devices[0]?.id}`);
    await expect
      .poll(() => page.getByTestId('current-version').textContent(), { timeout: SLOW })
      .toBe('1.0.0');
    expect(await page.getByTestId('deployments').textContent()).toContain(releaseV1);
  }, 240_000);

  it('lists artifacts with verified signatures, downloads one with the token, and follows a build live', async () => {
    await page.getByRole('link', { name: 'Builds & artifacts' }).click();
    const statuses = page.getByTestId('signature-status');
    await expect.poll(() => statuses.count()).toBe(2);
    await expect
      .poll(() => statuses.evaluateAll((cells) => cells.map((cell) => cell.getAttribute('data-status'))))
      .toEqual(['valid', 'valid']);

    const newest = (await server.api<{ artifacts: ArtifactRecord[] }>('GET', '/api/v1/artifacts')).body
      .artifacts[0] as ArtifactRecord;
    const downloading = page.waitForEvent('download');
    await page.getByTestId('artifact-row').first().getByRole('button', { name: 'Download' }).click();
    const download = await downloading;
    expect(download.suggestedFilename()).toBe(`${newest.name}-${newest.version}`);
    const saved = join(scratch, 'downloaded');
    await download.saveAs(saved);
    expect(createHash('sha256').update(readFileSync(saved)).digest('hex')).toBe(newest.sha256);

    await page.getByLabel('Recipe').fill('pi-minimal');
    await page.getByLabel('Board').fill('rpi-4b');
    await page.getByRole('button', { name: 'Start build' }).click();
    await expect.poll(() => page.getByTestId('build-state').textContent(), { timeout: SLOW }).toBe('failed');
    const [job] = (await server.api<{ builds: { id: string; error: string }[] }>('GET', '/api/v1/builds'))
      .body.builds;
    expect(await page.getByTestId('build-log').textContent()).not.toBe('');
    expect(await page.getByText(job?.error as string).count()).toBeGreaterThan(0);
    await expect.poll(() => page.getByTestId('build-row').count()).toBe(1);
    await screenshot(page, 'builds');
  }, 120_000);

  it('a viewer sees no enabled action button, and the API refuses the call when forced', async () => {
    // A rollout that waits for approval: an operator could pause, approve or abort it right now.
    const created = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: releaseV2,
      target: { tags: [TAG] },
      waves: [{ percent: 100, requiresApproval: true }],
    });
    expect(created.status).toBe(201);
    const pending = created.body.id;
    await page.goto(`${server.httpUrl}/rollouts/${pending}`);
    await expect.poll(() => page.getByRole('button', { name: 'Pause' }).isEnabled()).toBe(true);

    const viewerToken = (
      await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', {
        name: 'watcher',
        role: 'viewer',
      })
    ).body.token;
    const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const viewer = await viewerContext.newPage();
    await signIn(viewer, viewerToken);
    await expect.poll(() => viewer.getByTestId('operator').textContent()).toContain('viewer');
    await viewer.goto(`${server.httpUrl}/rollouts/${pending}`);
    await viewer.getByTestId('rollout-state').waitFor();
    for (const name of ['Pause', 'Resume', 'Abort', 'Approve']) {
      expect(await viewer.getByRole('button', { name }).isDisabled(), name).toBe(true);
    }
    await viewer.goto(`${server.httpUrl}/rollouts`);
    expect(await viewer.getByRole('button', { name: 'Start rollout' }).count()).toBe(0);
    await viewer.goto(`${server.httpUrl}/builds`);
    expect(await viewer.getByRole('button', { name: 'Start build' }).isDisabled()).toBe(true);

    // Forced from the viewer's page with its own token: the API is the enforcement.
    const forced = await viewer.evaluate(
      async ({ id, token }) => {
        const response = await fetch(`/api/v1/rollouts/${id}/pause`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}` },
        });
        return { status: response.status, body: (await response.json()) as { message: string } };
      },
      { id: pending, token: viewerToken },
    );
    expect(forced.status).toBe(403);
    expect(forced.body.message).toContain('operator role');
    expect((await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${pending}`)).body.state).toBe(
      'running',
    );
    await viewerContext.close();
  });

  it('stays correct across a server restart: the live stream reconnects and the fleet page refetches', async () => {
    await page.goto(server.httpUrl);
    await expect.poll(() => page.getByTestId('count-online').textContent(), { timeout: SLOW }).toBe('4');
    await expect.poll(() => page.locator('.live-status').textContent()).toBe('Live');
    const stopped = agents[FLEET_SIZE - 1] as AgentUnderTest;
    await stopped.kill();
    server = await server.restart();
    // No reload: the page notices the dropped stream, reconnects, and reads the fleet again.
    await expect.poll(() => page.locator('.live-status').textContent(), { timeout: SLOW }).toBe('Live');
    await expect
      .poll(() => page.getByTestId('count-online').textContent(), { timeout: SLOW })
      .toBe(String(FLEET_SIZE - 1));
    const badges = () =>
      page
        .getByTestId('device-row')
        .evaluateAll((rows) =>
          Object.fromEntries(
            rows.map((row) => [
              row.querySelector('a')?.textContent,
              row.querySelector('[data-testid="online-badge"]')?.textContent,
            ]),
          ),
        );
    await expect.poll(badges, { timeout: SLOW }).toEqual({
      'dash-0': 'online',
      'dash-1': 'online',
      'dash-2': 'online',
      'dash-3': 'offline',
    });
    expect(await page.getByTestId('count-offline').textContent()).toBe('1');
  }, 180_000);
});
