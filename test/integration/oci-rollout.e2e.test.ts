import { execFile } from 'node:child_process';
import {
  cpSync,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../cli/api-client.ts';
import { DebianArchive } from '../../builder/debian/debian-archive.repository.ts';
import {
  ociLayoutEntries,
  type TestImage,
  type TestTarEntry,
  tarBytes,
} from '../../device-agent/update/oci/oci-test-images.ts';
import type { BuildJob } from '../../protocol/api/builds.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { sqliteBackend } from '../support/databases.ts';
import { QemuPiFirmware } from '../support/qemu-pi.ts';
import { type RolloutStatus, waitForRolloutToSettle } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const run = promisify(execFile);
const BOARD = 'qemu-virt-arm64';
const RECIPES = new URL('../../firmware-recipes/', import.meta.url);
const PORT = 8080;

/** Debian's arm64 busybox-static (cached in ~/.cache/boardfleet): the containers' whole userland. */
async function arm64Busybox(): Promise<Buffer> {
  const archive = new DebianArchive({
    architecture: 'arm64',
    components: ['main'],
    cacheDir: join(homedir(), '.cache', 'boardfleet', 'debian'),
    maxIndexAgeSeconds: 7 * 24 * 3600,
  });
  await archive.loadIndex();
  const [busybox] = archive.resolve(['busybox-static'], {});
  if (!busybox) throw new Error('busybox-static missing from the archive');
  return readFileSync(join((await archive.unpack(busybox)).root, 'bin', 'busybox'));
}

/**
 * OCI containers on the minimal Pi image, end to end: the pi-containers image (pi-minimal with
 * Debian's crun) built by the server, booted once under qemu (`-M virt`, TCG), its agent running
 * three containers in turn: v1 pushed as an oci-image artifact (busybox), v2 the hello app bundle
 * built into an image by the server (Node), both healthy and committed; then v3, pushed, which
 * crashes at start and is rolled back to v2 with its last output in the reason.
 */
describe('OCI containers on the pi-containers image under qemu', () => {
  let server: TestServer;
  let api: ApiClient;
  let scratch: string;
  let vm: QemuPiFirmware;
  let deviceId: string;
  let userland: TestTarEntry[];
  /** How long the first boot took to bring the root slot up: this machine's TCG pace, loaded or not. */
  let firstBootMs = 0;
  /** A wait of `count` boots at the measured pace, never less than `floorMs`. */
  const boots = (count: number, floorMs: number) => Math.max(floorMs, Math.ceil(count * firstBootMs));

  /** An arm64 image that prints its version and serves it over HTTP on PORT; or crashes at start. */
  function image(version: string, behaviour: 'serve' | 'crash'): Buffer {
    const script =
      behaviour === 'serve'
        ? `echo "hello ${version} starting"; mkdir -p /tmp/www; echo ${version} > /tmp/www/index.html; exec httpd -f -p ${PORT} -h /tmp/www`
        : `echo "hello ${version} cannot open its database"; exit 3`;
    const spec: TestImage = {
      architecture: 'arm64',
      config: {
        Entrypoint: ['/bin/sh', '-c'],
        Cmd: [script],
        Env: ['PATH=/bin'],
        ExposedPorts: { [`${PORT}/tcp`]: {} },
      },
      layers: [userland],
    };
    return tarBytes(ociLayoutEntries(spec));
  }

  async function push(version: string, content: Buffer): Promise<string> {
    const artifact = await uploadArtifact(server, content, {
      name: 'hello',
      version,
      boards: [BOARD],
      kind: 'oci-image',
    });
    return artifact.id;
  }

  async function build(recipe: string): Promise<BuildJob> {
    const { status, body: queued } = await server.api<BuildJob>('POST', '/api/v1/builds', {
      recipe,
      board: BOARD,
    });
    expect(status).toBe(202);
    const log: string[] = [];
    for await (const { event, data } of api.events(`/api/v1/builds/${queued.id}/events`)) {
      if (event === 'log') log.push(String(data));
    }
    const { body: job } = await server.api<BuildJob>('GET', `/api/v1/builds/${queued.id}`);
    expect(job.state, `build failed: ${job.error}\n${log.slice(-20).join('\n')}`).toBe('succeeded');
    return job;
  }

  async function rollOut(release: string, artifactId: string): Promise<RolloutStatus> {
    const created = await server.api('POST', '/api/v1/releases', {
      name: release,
      artifacts: { [BOARD]: artifactId },
    });
    expect(created.status).toBe(201);
    const { body } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { boards: [BOARD] },
      waves: [{ percent: 100, soakSeconds: 1, errorThresholdPercent: 0, deviceTimeoutSeconds: 900 }],
    });
    return waitForRolloutToSettle(server, body.id, boots(4, 300_000));
  }

  async function download(job: BuildJob, role: 'sbom' | 'disk-image'): Promise<Response> {
    const output = job.outputs.find((candidate) => candidate.role === role)!;
    const response = await fetch(`${server.httpUrl}/api/v1/artifacts/${output.artifactId}/content`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect(response.status).toBe(200);
    return response;
  }

  /** The container's lines the agent wrote to its log on the console. */
  const consoleSays = (text: string, from: number) =>
    vm.waitForConsole(new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), boots(1, 120_000), from);

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'boardfleet-oci-e2e-'));
    mkdirSync(join(scratch, 'recipes'));
    for (const recipe of ['pi-containers.yaml', 'hello-container.yaml'])
      writeFileSync(join(scratch, 'recipes', recipe), readFileSync(new URL(recipe, RECIPES)));
    cpSync(new URL('pi-with-app/hello', RECIPES), join(scratch, 'recipes', 'pi-with-app', 'hello'), {
      recursive: true,
    });
    const busybox = await arm64Busybox();
    userland = [
      { path: 'bin/busybox', content: busybox, mode: 0o755 },
      ...['sh', 'mkdir', 'httpd'].map((applet) => ({
        path: `bin/${applet}`,
        type: 'SymbolicLink' as const,
        linkpath: 'busybox',
      })),
    ];
    // The VM reaches the host's loopback as 10.0.2.2 (qemu user networking).
    server = await startTestServer(sqliteBackend, {
      BOARDFLEET_RECIPES_DIR: join(scratch, 'recipes'),
      BOARDFLEET_HTTP_HOST: '127.0.0.1',
      BOARDFLEET_MQTT_HOST: '127.0.0.1',
      BOARDFLEET_TLS_NAMES: 'localhost,127.0.0.1,10.0.2.2',
    });
    api = new ApiClient(server.httpUrl, server.adminToken);
  });
  afterAll(async () => {
    await vm?.dispose();
    await server?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('builds pi-containers with crun and its libraries, boots it, and its agent provisions itself', async () => {
    const job = await build('pi-containers');
    // crun and what it links against, resolved for arm64, as the image's SBOM lists them.
    const sbom = (await (await download(job, 'sbom')).json()) as { packages: Array<{ name: string }> };
    const names = sbom.packages.map((pkg) => pkg.name);
    for (const name of ['crun', 'libyajl2', 'libseccomp2', 'libcap2']) expect(names).toContain(name);

    const disk = join(scratch, 'sd-card.img');
    const response = await download(job, 'disk-image');
    await pipeline(Readable.fromWeb(response.body as never), createWriteStream(`${disk}.zst`));
    await run('zstd', ['-d', '-q', '-f', '--rm', `${disk}.zst`]);
    const token = (await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'vm' }))
      .body.token;
    vm = new QemuPiFirmware(disk, {
      onConsole: process.env.TEST_VM_CONSOLE ? (text) => process.stderr.write(text) : undefined,
    });
    await vm.writeBootFile(
      'boardfleet.json',
      JSON.stringify({
        server: `https://10.0.2.2:${server.httpsPort}`,
        provisioningToken: token,
        name: 'vm-containers',
        board: BOARD,
        heartbeat: 5,
      }),
    );
    const bootedAt = Date.now();
    expect(await vm.boot()).toBe('a');
    await vm.waitForConsole(/boardfleet: slot a up/, 600_000);
    firstBootMs = Date.now() - bootedAt;
    const online = await eventually(
      'the VM agent online',
      async () => {
        const { body } = await server.api<{ devices: DeviceRecord[] }>('GET', '/api/v1/devices?limit=10');
        return body.devices.find((candidate) => candidate.name === 'vm-containers' && candidate.online);
      },
      boots(3, 180_000),
    );
    deviceId = online.id;
  }, 1_200_000);

  it('rolls out a pushed container v1, then the hello app bundle built into a signed image, v2: each healthy on its published port inside the device, committed', async () => {
    let from = vm.consoleText.length;
    const v1 = await rollOut('hello-1.0.0', await push('1.0.0', image('1.0.0', 'serve')));
    expect(v1.state, JSON.stringify(v1.log.slice(-5))).toBe('completed');
    expect(v1.devices).toMatchObject([{ deviceId, state: 'committed' }]);
    await consoleSays('hello 1.0.0 starting', from);

    const job = await build('hello-container');
    const output = job.outputs.find((candidate) => candidate.role === 'oci-image')!;
    const { body: stored } = await server.api<{ kind: string; signature: string }>(
      'GET',
      `/api/v1/artifacts/${output.artifactId}`,
    );
    expect(stored.kind).toBe('oci-image');
    expect(stored.signature).toMatch(/^[A-Za-z0-9+/=]{80,}$/);
    from = vm.consoleText.length;
    const v2 = await rollOut('hello-container-1.0.0', output.artifactId);
    expect(v2.state, JSON.stringify(v2.log.slice(-5))).toBe('completed');
    expect(v2.devices).toMatchObject([{ deviceId, state: 'committed' }]);
    await consoleSays('hello: listening on 8081', from);
  }, 1_200_000);

  it('rolls back a v3 that crashes at start to v2, with its last output lines in the reason', async () => {
    const from = vm.consoleText.length;
    const done = await rollOut('hello-3.0.0', await push('3.0.0', image('3.0.0', 'crash')));
    expect(done.state).toBe('paused');
    expect(done.devices[0]?.state).toBe('rolled-back');
    expect(done.devices[0]?.reason).toMatch(
      /container exited \(status 3\).*last output: hello 3\.0\.0 cannot open its database/,
    );
    // v2 starts again from its kept root.
    await consoleSays('hello: listening on 8081', from);
  }, 1_200_000);
});
