import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../cli/api-client.ts';
import { detectAccelerator, QemuVm } from '../../device-agent/vm/qemu-vm.ts';
import { extractBundle } from '../../device-agent/vm/vm-bundle.ts';
import type { BuildJob } from '../../protocol/api/builds.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { sqliteBackend } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const BOARD = 'vm-x86_64';
const RECIPES = fileURLToPath(new URL('../../firmware-recipes/', import.meta.url));
const showConsole = process.env.TEST_VM_CONSOLE
  ? (line: string) => process.stderr.write(`${line}\n`)
  : undefined;

/**
 * Unikernel-style images end to end: the server builds them from their recipes, qemu boots them
 * (TCG here: KVM does not work on these machines), and what runs as PID 1 is the application.
 */
describe('unikernel images: build through the API, boot under qemu', () => {
  let server: TestServer;
  let api: ApiClient;
  let scratch: string;
  const vms: QemuVm[] = [];

  async function build(recipe: string, board = BOARD): Promise<BuildJob> {
    const { status, body: queued } = await server.api<BuildJob>('POST', '/api/v1/builds', { recipe, board });
    expect(status).toBe(202);
    const log: string[] = [];
    for await (const { event, data } of api.events(`/api/v1/builds/${queued.id}/events`)) {
      if (event === 'log') log.push(String(data));
    }
    const { body: ended } = await server.api<BuildJob>('GET', `/api/v1/builds/${queued.id}`);
    expect(ended.state, `build failed: ${ended.error}\n${log.slice(-20).join('\n')}`).toBe('succeeded');
    return ended;
  }

  /** Downloads a build's unikernel bundle and unpacks it into its own folder. */
  async function bundleOf(job: BuildJob): Promise<string> {
    const output = job.outputs.find((candidate) => candidate.role === 'unikernel')!;
    const response = await fetch(`${server.httpUrl}/api/v1/artifacts/${output.artifactId}/content`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect(response.status).toBe(200);
    const tar = join(scratch, `${output.name}-${output.version}.tar`);
    await pipeline(Readable.fromWeb(response.body as never), createWriteStream(tar));
    const dir = join(scratch, `${output.name}-${output.version}`);
    await extractBundle(tar, dir, `${output.name} ${output.version}`);
    return dir;
  }

  /** Starts a bundle under qemu (the accelerator detected for it), collecting its console lines. */
  async function boot(
    bundleDir: string,
    architecture: 'x86_64' | 'arm64',
    env?: Record<string, string>,
  ): Promise<{ vm: QemuVm; lines: string[] }> {
    const lines: string[] = [];
    const vm = new QemuVm({
      bundleDir,
      accelerator: await detectAccelerator(architecture, { kernel: join(bundleDir, 'kernel') }),
      ...(env ? { env } : {}),
      onConsoleLine: (line) => {
        lines.push(line);
        showConsole?.(line);
      },
    });
    vms.push(vm);
    await vm.start();
    return { vm, lines };
  }

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'boardfleet-unikernel-e2e-'));
    // The checkout's recipes, and http-hello with its address given instead of asked for.
    const recipes = join(scratch, 'recipes');
    mkdirSync(recipes);
    const httpHello = readFileSync(join(RECIPES, 'http-hello.yaml'), 'utf8').replace(
      'sources: [http-hello/',
      `sources: [${RECIPES}http-hello/`,
    );
    writeFileSync(join(recipes, 'http-hello.yaml'), httpHello);
    writeFileSync(
      join(recipes, 'http-hello-static.yaml'),
      httpHello
        .replace(/^name: .*$/m, 'name: http-hello-static')
        .replace(/^network: .*$/m, 'network: { mode: static, address: 10.0.2.15/24, gateway: 10.0.2.2 }'),
    );
    writeFileSync(join(recipes, 'agent-vm.yaml'), readFileSync(join(RECIPES, 'agent-vm.yaml')));
    server = await startTestServer(sqliteBackend, {
      BOARDFLEET_RECIPES_DIR: recipes,
      BOARDFLEET_HTTP_HOST: '127.0.0.1',
      BOARDFLEET_MQTT_HOST: '127.0.0.1',
    });
    api = new ApiClient(server.httpUrl, server.adminToken);
  });
  afterAll(async () => {
    for (const vm of vms) vm.kill();
    await server?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('builds the C service, boots it, answers HTTP through a forwarded port and powers off when asked', async () => {
    const job = await build('http-hello');
    expect(job.outputs.map((output) => output.role).sort()).toEqual(['build-log', 'sbom', 'unikernel']);
    const bundle = job.outputs.find((output) => output.role === 'unikernel')!;
    const { body: artifact } = await server.api<{ kind: string; boards: string[]; signature: string }>(
      'GET',
      `/api/v1/artifacts/${bundle.artifactId}`,
    );
    expect(artifact.kind).toBe('unikernel');
    // The VM and the hosts that can run it: a release for host agents names their board.
    expect([...artifact.boards].sort()).toEqual(['generic-x64', 'vm-x86_64']);
    expect(artifact.signature).toMatch(/^[A-Za-z0-9+/=]{80,}$/);

    const { vm, lines } = await boot(await bundleOf(job), 'x86_64');
    await vm.waitForReady({ http: { port: 8080, path: '/healthz' } }, 120_000);
    const answer = await fetch(`http://127.0.0.1:${vm.hostPort(8080)}/`);
    expect(await answer.text()).toBe('hello 2.0.0\n');
    // No shell, no init system: the pre-init execs the application, which is PID 1.
    expect(lines).toContain('boardfleet-init: exec /app/http-hello');
    expect(
      lines.some((line) => /^boardfleet-init: eth0 10\.0\.2\.15 via 10\.0\.2\.2 \(dhcp\)$/.test(line)),
    ).toBe(true);

    const exit = await vm.stop({ graceMs: 30_000 });
    expect(lines).toContain('http-hello 2.0.0: stopping, powering off');
    expect(exit.code).toBe(0);
  }, 600_000);

  it('builds for arm64 with a static address: qemu virt boots it and it answers', async () => {
    const job = await build('http-hello-static', 'vm-arm64');
    const bundleDir = await bundleOf(job);
    const { vm, lines } = await boot(bundleDir, 'arm64');
    await vm.waitForReady({ http: { port: 8080, path: '/healthz' } }, 120_000);
    expect(await (await fetch(`http://127.0.0.1:${vm.hostPort(8080)}/`)).text()).toBe('hello 2.0.0\n');
    expect(lines).toContain('boardfleet-init: eth0 10.0.2.15/24 (static)');
    // The virt machine has no keyboard of its own: the virtio keyboard carries the reboot key.
    expect(JSON.parse(readFileSync(join(bundleDir, 'launch.json'), 'utf8'))).toMatchObject({
      architecture: 'arm64',
      stop: 'ctrl-alt-del',
    });
    const exit = await vm.stop({ graceMs: 30_000 });
    expect(lines).toContain('http-hello 2.0.0: stopping, powering off');
    expect(exit.code).toBe(0);
  }, 600_000);

  it('builds the agent as a unikernel: it connects to the server on the host and reports health', async () => {
    const job = await build('agent-vm');
    const { body: created } = await server.api<{ device: { id: string }; secret: string }>(
      'POST',
      '/api/v1/devices',
      { name: 'agent-in-a-vm' },
    );
    // qemu's user network shows the host's loopback as 10.0.2.2.
    const { vm, lines } = await boot(await bundleOf(job), 'x86_64', {
      BOARDFLEET_SERVER: `http://10.0.2.2:${server.httpPort}`,
      BOARDFLEET_MQTT: `mqtt://10.0.2.2:${server.mqttPort}`,
      BOARDFLEET_DEVICE_ID: created.device.id,
      BOARDFLEET_SECRET: created.secret,
    });
    const device = await eventually(
      'the agent in the VM online with health',
      async () => {
        const { body } = await server.api<
          DeviceRecord & { latestHealth: { memory: { totalBytes: number } } | null }
        >('GET', `/api/v1/devices/${created.device.id}`);
        return body.online && body.latestHealth ? body : undefined;
      },
      240_000,
    );
    expect(device.inventory).toMatchObject({ board: 'vm-x86_64', architecture: 'x64' });
    expect(device.latestHealth?.memory.totalBytes).toBeGreaterThan(256 * 1024 * 1024);
    expect(lines).toContain('boardfleet-init: exec /usr/bin/node');
    // The agent is PID 1 of its VM.
    expect(lines.some((line) => line.includes('"pid":1,') && line.includes('"msg":"connected"'))).toBe(true);

    await vm.stop({ graceMs: 30_000 });
    await eventually(
      'the device offline after its VM stopped',
      async () => {
        const { body } = await server.api<DeviceRecord>('GET', `/api/v1/devices/${created.device.id}`);
        return body.online ? undefined : body;
      },
      60_000,
    );
  }, 600_000);
});
