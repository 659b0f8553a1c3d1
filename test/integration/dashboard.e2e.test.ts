import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { AgentUnderTest } from '../support/agent-fleet.ts';
import { secretFile } from '../support/agent-process.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { launchChromium } from '../support/chromium.ts';
import { layoutProblems } from '../support/page-layout.ts';
import { sqliteBackend } from '../support/databases.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const DIST_INDEX = fileURLToPath(new URL('../../server/web/dist/index.html', import.meta.url));
const SCREENSHOTS = fileURLToPath(new URL('../../test-results/dashboard/', import.meta.url));
const BOARD = 'rpi-4b';
const TAG = 'dash';
const FLEET_SIZE = 4;
/** Waits on real agents and a loaded two-core machine: patient, never timing-sensitive. */
const SLOW = 90_000;

/** Polls what the page shows until it matches (or SLOW passes): the page updates on its own time. */
const poll = <T>(read: () => Promise<T> | T) => expect.poll(read, { timeout: SLOW, interval: 100 });

describe('the dashboard in Chromium, against a real server and agent processes', () => {
  let server: TestServer;
  let browser: Browser;
  let adminContext: BrowserContext;
  let page: Page;
  let provisioningToken: string;
  let releaseV1: string;
  let releaseV2: string;
  let releaseUnhealthy: string;
  let completedRollout: string;
  let abortedRollout: string;
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
    browser = await launchChromium();
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
    // By keyboard alone: the skip link comes first, the token field has its label, Enter submits.
    await page.goto(server.httpUrl);
    await page.getByLabel('Operator token').focus();
    await page.keyboard.type(server.adminToken);
    await page.keyboard.press('Enter');
    // The token the first start made is named for what it is.
    await poll(() => page.getByTestId('operator').textContent()).toBe('admin admin');
    // The session is an HttpOnly, SameSite=Strict cookie holding a session id; nothing of the
    // token is left where a script could read it.
    expect(await page.evaluate<number>('localStorage.length + sessionStorage.length')).toBe(0);
    expect(await page.evaluate<string>('document.cookie')).toBe('');
    const cdp = await adminContext.newCDPSession(page);
    const { cookies } = (await cdp.send('Network.getAllCookies')) as {
      cookies: Array<{ name: string; value: string; httpOnly: boolean; sameSite?: string; path: string }>;
    };
    await cdp.detach();
    expect(cookies.map(({ name, httpOnly, sameSite, path }) => ({ name, httpOnly, sameSite, path }))).toEqual(
      [{ name: 'boardfleet_session', httpOnly: true, sameSite: 'Strict', path: '/' }],
    );
    expect(cookies[0]?.value).not.toContain(server.adminToken);
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string | null>('document.activeElement.textContent')).toBe('Skip to content');
    await page.getByTestId('fleet-summary').waitFor();
    expect(await page.getByTestId('device-row').count()).toBe(0);
    expect(await page.getByTestId('count-total').textContent()).toBe('0');

    // Before any release, the rollouts page says how to make one instead of offering an empty form.
    await page.getByRole('link', { name: 'Rollouts' }).click();
    await page.getByTestId('no-release-help').waitFor();
    expect(await page.getByTestId('no-release-help').textContent()).toContain('boardfleet release create');
    expect(await page.getByRole('form', { name: 'New rollout' }).count()).toBe(0);
    await screenshot(page, 'rollouts-empty');
    releaseV1 = (await releaseAppBundle(server, BOARD, { name: 'app', version: '1.0.0' })).release;
    releaseV2 = (await releaseAppBundle(server, BOARD, { name: 'app', version: '2.0.0' })).release;
    releaseUnhealthy = (
      await releaseAppBundle(server, BOARD, { name: 'app', version: '3.0.0', unhealthy: true })
    ).release;
    await page.getByRole('link', { name: 'Fleet' }).click();
    await page.getByTestId('fleet-summary').waitFor();

    for (let index = 0; index < FLEET_SIZE; index++) {
      const agent = new AgentUnderTest(`${TAG}-${index}`, [
        '--server',
        server.httpUrl,
        '--provisioning-token-file',
        secretFile(provisioningToken),
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
    await poll(() =>
      page.locator('[data-testid="device-row"] [data-testid="online-badge"]').allTextContents(),
    ).toEqual(Array(FLEET_SIZE).fill('online'));
    await poll(() => page.getByTestId('count-online').textContent()).toBe('4');
    expect(await page.getByTestId('count-total').textContent()).toBe('4');

    // Search narrows the table on the server: one device by its name.
    await page.getByLabel('Search').fill(`${TAG}-2`);
    await page.getByLabel('Search').press('Enter');
    await poll(() => page.getByTestId('device-row').count()).toBe(1);
    expect(await page.getByTestId('device-row').first().textContent()).toContain(`${TAG}-2`);
    await page.goto(`${server.httpUrl}/`);
    await poll(() => page.getByTestId('device-row').count()).toBe(FLEET_SIZE);
    await screenshot(page, 'fleet');

    const phone = await adminContext.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(server.httpUrl);
    await phone.getByTestId('fleet-summary').waitFor();
    await poll(() => phone.getByTestId('device-row').count()).toBe(FLEET_SIZE);
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
    await poll(async () => Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(3);
    expect(await chart.locator('canvas').count()).toBe(1);
    expect(await page.getByTestId('health-chart').count()).toBe(5);
    await page.getByLabel('Time range').selectOption({ label: 'last 15 minutes' });
    await poll(async () => Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(3);
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
    await poll(() => page.getByTestId('preview-wave').allTextContents()).toEqual([
      'wave 1: 2 device(s)',
      'wave 2: 2 device(s)',
    ]);
    await screenshot(page, 'rollout-form');
    await form.getByRole('button', { name: 'Start rollout' }).click();
    await page.waitForURL(/\/rollouts\/ro/);
    const rolloutId = decodeURIComponent(new URL(page.url()).pathname.split('/')[2] ?? '');

    const waves = page.getByTestId('wave-progress');
    const state = page.getByTestId('rollout-state');
    await poll(() => waves.nth(0).getAttribute('data-wave-state')).toBe('succeeded');
    expect(await waves.nth(0).getAttribute('data-committed')).toBe('2');
    await poll(() => waves.nth(1).getAttribute('data-wave-state')).toBe('awaiting-approval');
    expect(await state.textContent()).toBe('running');

    await page.getByRole('button', { name: 'Pause' }).click();
    await poll(() => state.textContent()).toBe('paused');
    expect((await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${rolloutId}`)).body.state).toBe(
      'paused',
    );
    expect(await page.getByRole('button', { name: 'Pause' }).isDisabled()).toBe(true);
    await screenshot(page, 'rollout-paused');

    await page.getByRole('button', { name: 'Resume' }).click();
    await poll(() => state.textContent()).toBe('running');
    await page.getByRole('button', { name: 'Approve' }).click();
    await poll(() => state.textContent()).toBe('completed');
    expect(
      await waves.evaluateAll((items) => items.map((item) => item.getAttribute('data-committed'))),
    ).toEqual(['2', '2']);
    const done = (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${rolloutId}`)).body;
    expect(done.devices.map((device) => device.state)).toEqual(Array(FLEET_SIZE).fill('committed'));
    expect(done.log.map((entry) => entry.message)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^paused by /), expect.stringMatching(/^resumed by /)]),
    );
    await screenshot(page, 'rollout-completed');
    // The page says what the rollout was asked to do, and names its devices.
    expect(await page.getByTestId('rollout-target').textContent()).toBe(`devices tagged ${TAG}`);
    expect(await page.getByTestId('rollout-settings').textContent()).toContain(`${releaseV1} (for ${BOARD})`);
    // A first version has nothing to be assembled from: each device downloaded it whole.
    await poll(() => page.getByTestId('rollout-transfer').textContent()).toMatch(
      new RegExp(`^0 delta, ${FLEET_SIZE} full — \\S+ \\S+ fetched of \\S+ \\S+ in full \\(0\\.0% saved\\)$`),
    );
    await page.getByText('All devices (4)').click();
    expect((await page.locator('.all-devices tbody a').allTextContents()).sort()).toEqual(
      Array.from({ length: FLEET_SIZE }, (_, index) => `${TAG}-${index}`),
    );
    for (const cell of await page.getByTestId('device-transfer').allTextContents())
      expect(cell).toMatch(/^full (\S+ \S+) of \1$/);
    completedRollout = rolloutId;

    // The device page now shows the version it runs and the deployment in its history.
    const devices = (await server.api<{ devices: DeviceRecord[] }>('GET', `/api/v1/devices?tag=${TAG}`)).body
      .devices;
    await page.goto(`${server.httpUrl}/devices/${devices[0]?.id}`);
    await poll(() => page.getByTestId('current-version').textContent()).toBe('1.0.0');
    expect(await page.getByTestId('deployments').textContent()).toContain(releaseV1);
  }, 240_000);

  it('shows why a device failed when a wave trips', async () => {
    const devices = (await server.api<{ devices: DeviceRecord[] }>('GET', `/api/v1/devices?tag=${TAG}`)).body
      .devices;
    const target = devices[0] as DeviceRecord;
    const created = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: releaseUnhealthy,
      target: { deviceIds: [target.id] },
      waves: [{ name: 'canary', percent: 100, soakSeconds: 1, errorThresholdPercent: 0 }],
    });
    expect(created.status).toBe(201);
    await page.goto(`${server.httpUrl}/rollouts/${created.body.id}`);
    const failed = page.getByTestId('failed-devices');
    await poll(() => failed.locator('tbody tr').count()).toBe(1);
    await poll(() => page.getByTestId('rollout-state').textContent()).toBe('paused');
    const status = (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${created.body.id}`)).body;
    const reason = status.devices[0]?.reason as string;
    expect(reason).toContain('health check failed');
    await poll(() => failed.locator('tbody tr').first().textContent()).toContain(reason);
    expect(await failed.textContent()).toContain(target.id);
    expect(await page.getByTestId('wave-progress').getAttribute('data-wave-state')).toBe('tripped');
    await screenshot(page, 'rollout-tripped');
    // Abort it, so the later tests see the fleet on the release it runs.
    expect((await server.api('POST', `/api/v1/rollouts/${created.body.id}/abort`)).status).toBe(200);
  }, 120_000);

  it('lists artifacts with verified signatures, downloads one with the token, and follows a build live', async () => {
    await page.getByRole('link', { name: 'Builds & artifacts' }).click();
    const statuses = page.getByTestId('signature-status');
    await poll(() => statuses.count()).toBe(3);
    await poll(() =>
      statuses.evaluateAll((cells) => cells.map((cell) => cell.getAttribute('data-status'))),
    ).toEqual(['valid', 'valid', 'valid']);

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
    await poll(() => page.getByTestId('build-state').textContent()).toBe('failed');
    const [job] = (await server.api<{ builds: { id: string; error: string }[] }>('GET', '/api/v1/builds'))
      .body.builds;
    expect(await page.getByTestId('build-log').textContent()).not.toBe('');
    expect(await page.getByText(job?.error as string).count()).toBeGreaterThan(0);
    await poll(() => page.getByTestId('build-row').count()).toBe(1);
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
    await poll(() => page.getByRole('button', { name: 'Pause' }).isEnabled()).toBe(true);

    const viewerToken = (
      await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', {
        name: 'watcher',
        role: 'viewer',
      })
    ).body.token;
    const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const viewer = await viewerContext.newPage();
    await signIn(viewer, viewerToken);
    await poll(() => viewer.getByTestId('operator').textContent()).toContain('viewer');
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
    // The same through the viewer's session cookie (with the header the page sends): refused too.
    const forcedBySession = await viewer.evaluate(async (id) => {
      const response = await fetch(`/api/v1/rollouts/${id}/pause`, {
        method: 'POST',
        headers: { 'x-boardfleet-csrf': '1' },
      });
      return response.status;
    }, pending);
    expect(forcedBySession).toBe(403);
    expect((await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${pending}`)).body.state).toBe(
      'running',
    );

    // Signing out ends the session on the server: the cookie no longer opens the API.
    await viewer.getByRole('button', { name: 'Sign out' }).click();
    await viewer.getByLabel('Operator token').waitFor();
    expect(await viewerContext.cookies()).toEqual([]);
    expect(await viewer.evaluate(async () => (await fetch('/api/v1/me')).status)).toBe(401);
    await viewerContext.close();

    // Aborted from the admin's page, the wave that waited for approval reads "aborted".
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Abort' }).click();
    await poll(() => page.getByTestId('rollout-state').textContent()).toBe('aborted');
    await poll(() => page.getByTestId('wave-progress').getAttribute('data-wave-state')).toBe('aborted');
    abortedRollout = pending;
  });

  it('is correct again after a reconnect, with the events it missed while disconnected', async () => {
    await page.goto(server.httpUrl);
    await poll(() => page.getByTestId('count-online').textContent()).toBe('4');
    const liveStatus = page.locator('.live-status');
    await poll(() => liveStatus.textContent()).toBe('Live');

    // The server restarts while the page cannot reach the live stream: it misses what happens next.
    await page.route('**/api/v1/live**', (route) => route.abort());
    server = await server.restart();
    await poll(() => liveStatus.textContent()).toBe('Reconnecting…');
    await eventually(
      'the agents back online after the restart',
      async () =>
        (
          await server.api<{ devices: DeviceRecord[] }>('GET', `/api/v1/devices?tag=${TAG}`)
        ).body.devices.every((device) => device.online),
      // A restart on a loaded machine, then each agent's reconnect backoff: the slowest wait here.
      2 * SLOW,
    );
    const stopped = agents[FLEET_SIZE - 1] as AgentUnderTest;
    await stopped.kill();
    await eventually(
      `${stopped.name} offline`,
      async () =>
        (await server.api<{ devices: DeviceRecord[] }>('GET', `/api/v1/devices?online=false`)).body.devices
          .length === 1,
      SLOW,
    );
    expect(await page.getByTestId('count-online').textContent()).toBe('4');

    // No reload: once the stream is back, the page reads the fleet again.
    await page.unroute('**/api/v1/live**');
    await poll(() => liveStatus.textContent()).toBe('Live');
    await poll(() => page.getByTestId('count-online').textContent()).toBe(String(FLEET_SIZE - 1));
    expect(await page.getByTestId('count-offline').textContent()).toBe('1');
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
    expect(await badges()).toEqual({
      'dash-0': 'online',
      'dash-1': 'online',
      'dash-2': 'online',
      'dash-3': 'offline',
    });
  }, 360_000);

  it('lays out every page at 1280 px and 390 px with no sideways scrolling or wrapped button, dates in the browser locale', async () => {
    const devices = (await server.api<{ devices: DeviceRecord[] }>('GET', `/api/v1/devices?tag=${TAG}`)).body
      .devices;
    const offline = devices.find((device) => !device.online) as DeviceRecord;
    // Each page with what shows it has loaded.
    const pages: Array<[name: string, path: string, ready: string]> = [
      ['fleet', '/', '[data-testid="device-row"]'],
      ['device', `/devices/${offline.id}`, '[data-testid="health-chart"] canvas'],
      ['rollouts', '/rollouts', '[data-testid="rollout-row"]'],
      ['rollout', `/rollouts/${completedRollout}`, '[data-testid="wave-progress"]'],
      ['rollout-aborted', `/rollouts/${abortedRollout}`, '[data-testid="wave-progress"]'],
      ['builds', '/builds', '[data-testid="artifact-row"]'],
      ['audit', '/audit', '[data-testid="audit-row"]'],
    ];
    const dates = {
      'en-US': /^\d{1,2}\/\d{1,2}\/\d{2}, \d{1,2}:\d{2}:\d{2}\s[AP]M$/,
      'de-DE': /^\d{2}\.\d{2}\.\d{2}, \d{2}:\d{2}:\d{2}$/,
    };
    for (const [width, locale] of [
      [1280, 'en-US'],
      [390, 'de-DE'],
    ] as const) {
      const context = await browser.newContext({ viewport: { width, height: 844 }, locale });
      const view = await context.newPage();
      const check = async (name: string) => {
        await screenshot(view, `${name}-${width}px`);
        expect(await layoutProblems(view), `${name} at ${width} px`).toEqual([]);
      };
      await view.goto(server.httpUrl);
      await view.getByLabel('Operator token').waitFor();
      await check('sign-in');
      await signIn(view, server.adminToken);
      await view.getByTestId('fleet-summary').waitFor();
      for (const [name, path, ready] of pages) {
        await view.goto(`${server.httpUrl}${path}`);
        await view.locator(ready).first().waitFor({ timeout: SLOW });
        await check(name);
        if (name === 'rollout')
          expect(await view.locator('.log time').first().textContent()).toMatch(dates[locale]);
      }
      await context.close();
    }

    // The offline device's last heartbeat says nothing about its health now.
    await page.goto(`${server.httpUrl}/devices/${offline.id}`);
    await poll(() => page.getByTestId('health-problem').textContent()).toBe('unknown');
    await page.goto(`${server.httpUrl}/rollouts`);
    const completedRow = page.locator(`[data-rollout-id="${completedRollout}"]`);
    expect(await completedRow.getByTestId('rollout-progress').textContent()).toBe(
      `${FLEET_SIZE}/${FLEET_SIZE} committed`,
    );
    // A favicon, served by the server itself.
    const icon = await page.locator('link[rel="icon"]').getAttribute('href');
    const served = await fetch(new URL(icon ?? '/missing-icon', server.httpUrl));
    expect([served.status, served.headers.get('content-type')]).toEqual([
      200,
      expect.stringContaining('svg'),
    ]);
  }, 240_000);
});
