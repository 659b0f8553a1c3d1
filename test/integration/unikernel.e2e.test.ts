import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../cli/api-client.ts';
import type { BuildJob } from '../../protocol/api/builds.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { freePort, sqliteBackend } from '../support/databases.ts';
import { type RolloutStatus, waitForRolloutToSettle } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const RECIPES = fileURLToPath(new URL('../../firmware-recipes', import.meta.url));
const CRASH_RECIPE = fileURLToPath(new URL('../../builder/fixtures/http-hello-crash.yaml', import.meta.url));
const HOST_BOARD = 'generic-x64';

/**
 * The agent's `vm` strategy end to end: the server builds the C service as a unikernel image
 * (2.0.0, and a 3.0.0 that crashes at start), a host agent (board generic-x64) runs it as a VM
 * under qemu and publishes its port; rollouts from the rollout engine switch versions or roll
 * back, and the crashed VM's console reaches the server.
 */
describe('unikernel rollouts to a host agent', () => {
  let server: TestServer;
  let api: ApiClient;
  let scratch: string;
  let agent: ReturnType<typeof startAgentProcess>;
  let deviceId: string;
  let publishedPort: number;

  async function build(recipe: string): Promise<string> {
    const { status, body: queued } = await server.api<BuildJob>('POST', '/api/v1/builds', {
      recipe,
      board: 'vm-x86_64',
    });
    expect(status, JSON.stringify(queued)).toBe(202);
    const log: string[] = [];
    for await (const { event, data } of api.events(`/api/v1/builds/${queued.id}/events`)) {
      if (event === 'log') log.push(String(data));
    }
    const { body: ended } = await server.api<BuildJob>('GET', `/api/v1/builds/${queued.id}`);
    expect(ended.state, `build failed: ${ended.error}\n${log.slice(-20).join('\n')}`).toBe('succeeded');
    return ended.outputs.find((output) => output.role === 'unikernel')!.artifactId;
  }

  async function rollOut(artifactId: string, release: string): Promise<RolloutStatus> {
    const { status } = await server.api('POST', '/api/v1/releases', {
      name: release,
      artifacts: { [HOST_BOARD]: artifactId },
    });
    expect(status).toBe(201);
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { tags: ['vm-host'] },
      waves: [{ percent: 100, soakSeconds: 1, errorThresholdPercent: 0, deviceTimeoutSeconds: 900 }],
    });
    return waitForRolloutToSettle(server, created.id, 900_000);
  }

  async function published(): Promise<string> {
    try {
      return await (
        await fetch(`http://127.0.0.1:${publishedPort}/`, { signal: AbortSignal.timeout(10_000) })
      ).text();
    } catch (error) {
      return `unreachable: ${(error as Error).message}`;
    }
  }

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'boardfleet-unikernel-rollout-'));
    // The shipped recipe and the crashing fixture side by side, sharing the C sources.
    const recipes = join(scratch, 'recipes');
    mkdirSync(recipes);
    cpSync(join(RECIPES, 'http-hello.yaml'), join(recipes, 'http-hello.yaml'));
    cpSync(join(RECIPES, 'http-hello'), join(recipes, 'http-hello'), { recursive: true });
    writeFileSync(
      join(recipes, 'http-hello-crash.yaml'),
      readFileSync(CRASH_RECIPE, 'utf8').replace(/(\.\.\/)+firmware-recipes\/http-hello\//, 'http-hello/'),
    );
    server = await startTestServer(sqliteBackend, { BOARDFLEET_RECIPES_DIR: recipes });
    api = new ApiClient(server.httpUrl, server.adminToken);
    publishedPort = await freePort();
    const { body: token } = await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', {
      name: 'vm-host',
    });
    const configFile = join(scratch, 'agent.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        vm: {
          publish: [{ hostPort: publishedPort, guestPort: 8080, address: '127.0.0.1' }],
          accelerator: 'auto',
          readyTimeoutSeconds: 300,
        },
      }),
    );
    agent = startAgentProcess([
      ...['--config', configFile, '--server', server.httpUrl],
      ...['--provisioning-token-file', secretFile(token.token)],
      ...['--name', 'vm-host', '--tag', 'vm-host', '--board', HOST_BOARD, '--heartbeat', '2'],
      ...['--data-dir', join(scratch, 'agent')],
    ]);
    deviceId = await eventually(
      'the host agent online',
      async () => {
        const { body } = await server.api<{ devices: DeviceRecord[] }>(
          'GET',
          '/api/v1/devices?tag=vm-host&online=true',
        );
        return body.devices[0]?.id;
      },
      60_000,
    );
  }, 120_000);

  afterAll(async () => {
    if (process.env.DEBUG_E2E) console.log(agent?.output());
    if (agent) await stopProcess(agent, 'SIGTERM');
    await server?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  }, 120_000);

  it('rolls out v2 of the C service: the VM starts, gets healthy and answers on the published port', async () => {
    const v2 = await build('http-hello');
    const done = await rollOut(v2, 'http-hello-2.0.0');
    expect(done.state, JSON.stringify(done.devices)).toBe('completed');
    expect(done.devices).toMatchObject([{ deviceId, state: 'committed' }]);
    expect(await published()).toBe('hello 2.0.0\n');
  }, 1_800_000);

  it('rolls back a v3 that crashes at start: v2 keeps answering, the reason and the server hold its console', async () => {
    const v3 = await build('http-hello-crash');
    const done = await rollOut(v3, 'http-hello-3.0.0');
    expect(done.state).toBe('paused');
    expect(['failed', 'rolled-back']).toContain(done.devices[0]?.state);
    const reason = done.devices[0]?.reason ?? '';
    expect(reason).toMatch(/^http-hello 3\.0\.0 exited before it was ready: the guest rebooted/);
    expect(reason).toContain('last console lines:');
    expect(reason).toContain('HELLO_CRASH=1, failing at start on purpose');
    // The old VM never stopped serving.
    expect(await published()).toBe('hello 2.0.0\n');
    await eventually(
      'the rollback reported',
      async () => {
        const { body } = await server.api<{ events: Array<{ type: string; data?: { state?: string } }> }>(
          'GET',
          `/api/v1/devices/${deviceId}/events?limit=50`,
        );
        return body.events.some(
          (event) => event.type === 'deployment' && event.data?.state === 'rolled-back',
        );
      },
      120_000,
    );
    const console = await eventually(
      "v3's console on the server",
      async () => {
        const response = await fetch(
          `${server.httpUrl}/api/v1/devices/${deviceId}/consoles/http-hello-vm-x86_64/3.0.0`,
          { headers: { authorization: `Bearer ${server.adminToken}` } },
        );
        const text = response.ok ? await response.text() : '';
        return text.includes('Kernel panic') ? text : undefined;
      },
      60_000,
    );
    expect(console).toContain('HELLO_CRASH=1, failing at start on purpose');
    expect(await published()).toBe('hello 2.0.0\n');
  }, 1_800_000);
});
