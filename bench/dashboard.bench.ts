// `npm run bench -- dashboard [--devices 10000] [--requests 200] [--renders 5]`: a fleet of N
// registered devices (40 % online with heartbeats), then (a) the device list API's p95 for page 1
// with and without filters and search, and the fleet summary's; (b) the floor in the same run: the
// same queries through the repositories in-process, no HTTP; (c) time to first render of the
// fleet page in Chromium (signed in beforehand with the session cookie, until the first device row and
// the summary are shown), against the floor of the two API calls that page waits for.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CSRF_HEADER } from '../protocol/api/session.ts';
import type { Health } from '../protocol/schemas.ts';
import { loadServerConfig } from '../server/config/config.ts';
import { type DeviceFilter, DeviceRepository } from '../server/devices/device.repository.ts';
import { FleetSummaryRepository } from '../server/devices/fleet-summary.repository.ts';
import { type HealthToStore, TelemetryRepository } from '../server/telemetry/telemetry.repository.ts';
import { launchChromium } from '../test/support/chromium.ts';
import { startBenchServer } from './bench-server.ts';
import { percentile } from './stats.ts';

const PAGE = 50;
const PLACES = ['kitchen', 'garage', 'shed', 'attic', 'porch', 'lab', 'office', 'greenhouse'];
const BOARDS = ['rpi-4b', 'rpi-4b', 'rpi-4b', 'rpi-3b', 'rpi-zero-2w'];
const VERSIONS = ['1.0.0', '1.1.0', '1.2.0'];

interface ListCase {
  label: string;
  query: string;
  filter: DeviceFilter;
}

const LIST_CASES: ListCase[] = [
  { label: 'page 1, no filter', query: '', filter: { limit: PAGE, offset: 0 } },
  {
    label: 'page 1, online+board+version',
    query: 'online=true&board=rpi-4b&version=1.2.0',
    filter: { online: true, board: 'rpi-4b', version: '1.2.0', limit: PAGE, offset: 0 },
  },
  { label: 'page 1, tag', query: 'tag=site-b', filter: { tag: 'site-b', limit: PAGE, offset: 0 } },
  {
    label: 'page 1, search "kitchen"',
    query: 'q=kitchen',
    filter: { search: 'kitchen', limit: PAGE, offset: 0 },
  },
  { label: 'page 1, sort by name', query: 'sort=name', filter: { sort: 'name', limit: PAGE, offset: 0 } },
  {
    label: 'page 1, sort by last seen',
    query: 'sort=lastSeen',
    filter: { sort: 'lastSeen', limit: PAGE, offset: 0 },
  },
  { label: 'page 100, no filter', query: 'offset=4950', filter: { limit: PAGE, offset: 4950 } },
];

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      devices: { type: 'string', default: '10000' },
      requests: { type: 'string', default: '200' },
      renders: { type: 'string', default: '5' },
    },
  });
  const count = Number(values.devices);
  const requests = Number(values.requests);
  const renders = Number(values.renders);
  const webDir = loadServerConfig({}).webDir;
  if (!existsSync(join(webDir, 'index.html')))
    throw new Error(`the dashboard is not built (no ${webDir}/index.html): run npm run build:web first`);

  const server = await startBenchServer();
  try {
    const seeded = Date.now();
    const online = await seedFleet(server.db, count);
    process.stdout.write(
      `dashboard benchmark: ${count} devices (${online} online with heartbeats) seeded in ${((Date.now() - seeded) / 1000).toFixed(1)} s ` +
        `straight through SQL and the telemetry repository; SQLite; ${requests} sequential requests per figure\n\n`,
    );
    const get = async (path: string) => {
      const response = await fetch(`${server.httpUrl}${path}`, {
        headers: { authorization: `Bearer ${server.adminToken}` },
      });
      if (response.status !== 200)
        throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
      return response.json() as Promise<unknown>;
    };
    const devices = new DeviceRepository(server.db);
    const fleet = new FleetSummaryRepository(server.db);

    const rows: Array<[string, string, string]> = [];
    const p95s: Record<string, number> = {};
    for (const listCase of LIST_CASES) {
      const apiTimes = await time(requests, () => get(`/api/v1/devices?limit=${PAGE}&${listCase.query}`));
      const floorTimes = await time(requests, () =>
        Promise.all([devices.list(listCase.filter), devices.count(listCase.filter)]),
      );
      p95s[listCase.label] = percentile(apiTimes, 95);
      rows.push([
        `device list ${listCase.label}`,
        `${fmt(percentile(apiTimes, 50))} / ${fmt(percentile(apiTimes, 95))}`,
        `${fmt(percentile(floorTimes, 50))} / ${fmt(percentile(floorTimes, 95))}`,
      ]);
    }
    const summaryTimes = await time(requests, () => get('/api/v1/fleet/summary'));
    const summaryFloor = await time(requests, () => fleet.summary());
    rows.push([
      'fleet summary',
      `${fmt(percentile(summaryTimes, 50))} / ${fmt(percentile(summaryTimes, 95))}`,
      `${fmt(percentile(summaryFloor, 50))} / ${fmt(percentile(summaryFloor, 95))}`,
    ]);

    const renderTimes = await measureFirstRender(server.httpUrl, server.adminToken, renders);
    const pageFloor = (p95s['page 1, no filter'] ?? 0) + percentile(summaryTimes, 95);
    rows.push([
      'fleet page first render',
      `${fmt(renderTimes[0] ?? Number.NaN)} cold, ${fmt(percentile(renderTimes.slice(1), 50))} warm`,
      `${fmt(pageFloor)} (list + summary API p95)`,
    ]);

    process.stdout.write(
      `${'figure (ms, p50 / p95)'.padEnd(44)}${'dashboard API / Chromium'.padEnd(32)}floor\n`,
    );
    for (const [label, measured, floor] of rows)
      process.stdout.write(`${label.padEnd(44)}${measured.padEnd(32)}${floor}\n`);
    process.stdout.write(
      `\nAPI: GET /api/v1/devices?limit=${PAGE}&… over HTTP with the admin token (list + total).\n` +
        `floor: the same list and count through DeviceRepository (and FleetSummaryRepository) in-process, no HTTP.\n` +
        `first render: fresh browser context, signed in (session cookie), navigate to / until the first\n` +
        `[data-testid="device-row"] and [data-testid="fleet-summary"] are visible; ${renders} runs, the first is cold.\n`,
    );
  } finally {
    await server.dispose();
  }
}

/** Registers the fleet in SQL (one secret hash for all, as bench-server does) and stores a day of heartbeats for the online ones. */
async function seedFleet(
  db: Awaited<ReturnType<typeof startBenchServer>>['db'],
  count: number,
): Promise<number> {
  const now = Date.now();
  const rows = Array.from({ length: count }, (_, i) => {
    const isOnline = i % 5 < 2;
    return {
      id: `dev-bench${String(i).padStart(6, '0')}`,
      name: `${PLACES[i % PLACES.length]}-pi-${String(i).padStart(5, '0')}`,
      board: BOARDS[i % BOARDS.length] as string,
      reported_board: BOARDS[i % BOARDS.length] as string,
      running_version: VERSIONS[i % VERSIONS.length] as string,
      secret_hash: null,
      created_at: now - count + i,
      online: isOnline ? 1 : 0,
      presence_changed_at: now - 60_000,
      last_seen_at: i % 10 === 9 ? null : now - ((i * 7919) % 86_400_000),
    };
  });
  for (let start = 0; start < rows.length; start += 500) {
    const chunk = rows.slice(start, start + 500);
    await db.insertInto('devices').values(chunk).execute();
    await db
      .insertInto('device_tags')
      .values(
        chunk.map((row, index) => ({ device_id: row.id, tag: (start + index) % 2 ? 'site-b' : 'site-a' })),
      )
      .execute();
  }
  const telemetry = new TelemetryRepository(db, new DeviceRepository(db));
  const onlineRows = rows.filter((row) => row.online === 1);
  // Four heartbeats a device; one in fifty is nearly out of disk (failing health).
  for (let beat = 3; beat >= 0; beat--) {
    const samples: HealthToStore[] = onlineRows.map((row, index) => ({
      deviceId: row.id,
      receivedAt: now - beat * 30_000,
      health: heartbeat(now - beat * 30_000, index % 50 === 0),
    }));
    await telemetry.insertHealth(samples);
  }
  return onlineRows.length;
}

function heartbeat(at: number, diskFull: boolean): Health {
  return {
    at,
    uptimeSeconds: 3600,
    load: [0.4, 0.3, 0.2],
    memory: { totalBytes: 4e9, availableBytes: 2.5e9 },
    disk: { totalBytes: 32e9, freeBytes: diskFull ? 0.5e9 : 20e9 },
    cpuTemperatureCelsius: 52,
    agentRssBytes: 40e6,
  };
}

async function measureFirstRender(httpUrl: string, token: string, runs: number): Promise<number[]> {
  const browser = await launchChromium();
  try {
    const times: number[] = [];
    for (let run = 0; run < runs; run++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      // The context's request client shares its cookies: the page starts signed in, as after a reload.
      const signedIn = await context.request.post(`${httpUrl}/api/v1/session`, {
        data: { token },
        headers: { [CSRF_HEADER]: '1' },
      });
      if (!signedIn.ok()) throw new Error(`sign-in failed: ${signedIn.status()} ${await signedIn.text()}`);
      const page = await context.newPage();
      const started = performance.now();
      await page.goto(`${httpUrl}/`);
      await Promise.all([
        page.locator('[data-testid="device-row"]').first().waitFor({ state: 'visible', timeout: 60_000 }),
        page.locator('[data-testid="fleet-summary"]').waitFor({ state: 'visible', timeout: 60_000 }),
      ]);
      times.push(performance.now() - started);
      await context.close();
    }
    return times;
  } finally {
    await browser.close();
  }
}

async function time(runs: number, work: () => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < Math.min(20, runs); i++) await work();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await work();
    times.push(performance.now() - started);
  }
  return times;
}

const fmt = (ms: number) => ms.toFixed(ms < 10 ? 2 : 1);
