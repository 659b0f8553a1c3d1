/**
 * The device page's log view with an attached board as the source, in Chromium: a real server, a
 * real agent process, and a simulated Uno (simavr running a counter sketch built by our builder)
 * on a real pty as the board its inventory reports. The view follows the board's serial output
 * live, at the speed the page asks for.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SimulatedBoard } from '../../mcu/simulator/simulated-board.ts';
import { type startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { launchChromium } from '../support/chromium.ts';
import { layoutProblems } from '../support/page-layout.ts';
import { startSerialGateway } from '../support/serial-gateway.ts';
import { eventually, type TestServer } from '../support/test-server.ts';

/** simavr runs the board in real time: on a loaded two-core machine give each step room. */
const SLOW = 120_000;

describe("the device page's log view following an attached board", () => {
  let server: TestServer;
  let uno: SimulatedBoard;
  let agent: ReturnType<typeof startAgentProcess>;
  let browser: Browser;
  let deviceId: string;

  beforeAll(async () => {
    ({ server, uno, agent, deviceId } = await startSerialGateway('dash-gateway', SLOW));
    browser = await launchChromium();
  }, SLOW * 2);

  afterAll(async () => {
    await browser?.close();
    if (agent) await stopProcess(agent, 'SIGTERM');
    await uno?.stop();
    await server?.dispose();
  });

  /** The board's lines on the page, without the time each starts with. */
  const boardLines = async (page: Page) =>
    (await page.getByTestId('device-log-lines').locator('div').allTextContents())
      .map((line) => line.slice(line.indexOf(' ') + 1))
      .filter((line) => line.startsWith(`board:${uno.portPath} `))
      .map((line) => line.slice(`board:${uno.portPath} `.length));

  it(
    'offers the board as a source, follows its counter live, and reads it at the speed asked',
    async () => {
      const page = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
      await page.goto(server.httpUrl);
      await page.getByLabel('Operator token').fill(server.adminToken);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByTestId('fleet-summary').waitFor({ timeout: SLOW });
      await page.goto(`${server.httpUrl}/devices/${deviceId}`);
      const logs = page.getByTestId('device-logs');
      const source = logs.getByLabel('Source');
      await source.waitFor({ timeout: SLOW });
      expect(await source.locator('option').allTextContents()).toEqual([
        'Apps and agent',
        `Board on ${uno.portPath} (uno)`,
      ]);
      // Before the board is chosen its output is not captured: the view follows the workloads only.
      await expect
        .poll(() => logs.getByTestId('device-logs-status').textContent(), { timeout: SLOW })
        .toBe('following');
      expect(await boardLines(page)).toEqual([]);

      await source.selectOption(uno.portPath);
      expect(await logs.getByLabel("The board's serial speed in baud").inputValue()).toBe('115200');
      await logs.getByRole('button', { name: 'Show' }).click();
      const counts = async () =>
        (await boardLines(page))
          .filter((text) => /^count \d+$/.test(text))
          .map((text) => Number(text.slice(6)));
      await eventually('the counter on the page', async () => (await counts()).length >= 10, SLOW);
      expect((await boardLines(page))[0]).toBe(`-- serial capture of ${uno.portPath} at 115200 baud --`);
      // It follows: newer counts arrive without a reload, in the order the board printed them.
      const seen = (await counts()).at(-1) as number;
      await eventually(
        'newer counts on the page',
        async () => ((await counts()).at(-1) as number) > seen + 10,
        SLOW,
      );
      const recent = (await counts()).slice(-10);
      expect(recent).toEqual([...recent.keys()].map((offset) => (recent[0] as number) + offset));
      expect(await layoutProblems(page), 'device page with the board source at 390 px').toEqual([]);

      // Another speed opens the capture again at that speed (a sketch at 115200 reads as noise then).
      await logs.getByLabel("The board's serial speed in baud").fill('9600');
      await logs.getByRole('button', { name: 'Show' }).click();
      await eventually(
        'the capture at 9600 baud',
        async () => (await boardLines(page)).includes(`-- serial capture of ${uno.portPath} at 9600 baud --`),
        SLOW,
      ).catch(async (error: unknown) => {
        const status = await logs.getByTestId('device-logs-status').textContent();
        throw new Error(
          `${(error as Error).message}; the view says ${status}: ${(await boardLines(page)).slice(-5).join(' | ')}`,
        );
      });
      expect(await logs.getByTestId('device-logs-status').textContent()).not.toContain('stopped');
    },
    SLOW * 2,
  );
});
