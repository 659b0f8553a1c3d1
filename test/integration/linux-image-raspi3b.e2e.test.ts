import { execFile } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../cli/api-client.ts';
import { BOOT_CONFIG, slotOfBootConfig } from '../../protocol/linux-ab-layout.ts';
import type { BuildJob } from '../../protocol/api/builds.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { sqliteBackend } from '../support/databases.ts';
import { QemuPiFirmware } from '../support/qemu-pi.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const run = promisify(execFile);
const BOARD = 'rpi-3b';
const RECIPE = new URL('../../firmware-recipes/pi-minimal.yaml', import.meta.url);

/**
 * The rpi-3b image file on qemu's emulated Raspberry Pi 3 (`-M raspi3b`, TCG): its SD host,
 * mini UART console and dwc2 USB, with qemu's usb-net adapter as the network. That adapter has a
 * locally administered MAC, so Linux names it usb0, not the board's eth0: the init must pick it.
 * The Pi 3, emulated or real, has no real-time clock: the init sets the clock to the image's build
 * time and the agent takes the server's before it speaks TLS. The harness (QemuPiFirmware) plays
 * the firmware's choice of slot from config.txt; rpi-3b's boot-once trial is the initramfs's
 * (trial.txt), run by the image itself.
 */
describe('the Pi image on emulated Pi hardware (-M raspi3b)', () => {
  let server: TestServer;
  let api: ApiClient;
  let scratch: string;
  let vm: QemuPiFirmware;
  let deviceId: string;
  const builds = new Map<string, BuildJob>();
  /** How long the first boot took to bring the root slot up: this machine's TCG pace, loaded or not. */
  let firstBootMs = 0;
  /** A wait of `count` boots at the measured pace, never less than `floorMs` (which holds on an idle machine). */
  const boots = (count: number, floorMs: number) => Math.max(floorMs, Math.ceil(count * firstBootMs));

  function writeRecipe(name: string, version: string, change: (text: string) => string = (text) => text) {
    const text = readFileSync(RECIPE, 'utf8')
      .replace(/^name: .*$/m, `name: ${name}`)
      .replace(/^version: .*$/m, `version: ${version}`);
    writeFileSync(join(scratch, 'recipes', `${name}.yaml`), change(text));
  }

  async function build(recipe: string): Promise<BuildJob> {
    const { status, body: queued } = await server.api<BuildJob>('POST', '/api/v1/builds', {
      recipe,
      board: BOARD,
    });
    expect(status).toBe(202);
    const logLines: string[] = [];
    for await (const { event, data } of api.events(`/api/v1/builds/${queued.id}/events`)) {
      if (event === 'log') logLines.push(String(data));
    }
    const { body: ended } = await server.api<BuildJob>('GET', `/api/v1/builds/${queued.id}`);
    expect(ended.state, `build failed: ${ended.error}\n${logLines.slice(-20).join('\n')}`).toBe('succeeded');
    builds.set(recipe, ended);
    return ended;
  }

  async function rollOut(recipe: string): Promise<string> {
    const payload = builds.get(recipe)!.outputs.find((output) => output.role === 'update-payload')!;
    const release = `${recipe}-${payload.version}`;
    const created = await server.api('POST', '/api/v1/releases', {
      name: release,
      artifacts: { [BOARD]: payload.artifactId },
    });
    expect(created.status).toBe(201);
    const { body } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { boards: [BOARD] },
      waves: [{ percent: 100, soakSeconds: 5, errorThresholdPercent: 0, deviceTimeoutSeconds: 900 }],
    });
    return body.id;
  }

  const rollout = async (id: string) =>
    (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${id}`)).body;

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'boardfleet-raspi3b-e2e-'));
    mkdirSync(join(scratch, 'recipes'));
    writeRecipe('pi-minimal', '1.0.0');
    writeRecipe('pi-minimal-next', '1.1.0', (text) =>
      text.replace("/data keeps the agent's state.", "/data keeps the agent's state (1.1.0)."),
    );
    // An image whose agent never starts: nothing on the device can commit it.
    writeRecipe('pi-minimal-broken', '1.2.0', (text) => text.replace(/include: true/, 'include: false'));
    // The emulated Pi reaches the host's loopback as 10.0.2.2 (qemu user networking): the server's
    // certificate names it, and the agent speaks HTTPS and MQTT over TLS to it, pinning the CA.
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

  it('boots the rpi-3b image file; the init picks usb0, the agent sets the clock from the server and comes online', async () => {
    const job = await build('pi-minimal');
    const diskOutput = job.outputs.find((output) => output.role === 'disk-image')!;
    const disk = join(scratch, 'sd-card.img');
    await pipeline(
      Readable.fromWeb((await download(diskOutput.artifactId)).body as never),
      createWriteStream(`${disk}.zst`),
    );
    await run('zstd', ['-d', '-q', '-f', '--rm', `${disk}.zst`]);
    const token = (await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'pi' }))
      .body.token;
    vm = new QemuPiFirmware(disk, {
      machine: 'raspi3b',
      onConsole: process.env.TEST_VM_CONSOLE ? (text) => process.stderr.write(text) : undefined,
    });
    await vm.writeBootFile(
      'boardfleet.json',
      JSON.stringify({
        server: `https://10.0.2.2:${server.httpsPort}`,
        provisioningToken: token,
        name: 'pi-1',
        board: BOARD,
        heartbeat: 5,
      }),
    );
    const bootedAt = Date.now();
    expect(await vm.boot()).toBe('a');
    await vm.waitForConsole(/boardfleet: slot a up/, 600_000);
    firstBootMs = Date.now() - bootedAt;
    // The image was built before the server made its certificate: the floor alone is not enough.
    expect(vm.consoleText).toMatch(/boardfleet: no clock: set to the image's build time, \d{4}-/);
    await vm.waitForConsole(/boardfleet: network on usb0 \(eth0 not present\)/, boots(1, 60_000));
    await vm.waitForConsole(/boardfleet: usb0 has address 10\.0\.2\.\d+/, boots(1, 60_000));
    const online = await eventually(
      'the emulated Pi online',
      async () => {
        const { body } = await server.api<{ devices: DeviceRecord[] }>('GET', '/api/v1/devices?limit=10');
        return body.devices.find((candidate) => candidate.name === 'pi-1' && candidate.online);
      },
      boots(2, 180_000),
    );
    expect(vm.consoleText).toMatch(
      /the clock was \d+ s behind https:\/\/10\.0\.2\.2:\d+'s \(no real-time clock\?\)/,
    );
    deviceId = online.id;
    // The inventory follows the connection.
    const device = await eventually(
      'the inventory of the emulated Pi',
      async () => {
        const { body } = await server.api<DeviceRecord>('GET', `/api/v1/devices/${deviceId}`);
        return body.inventory ? body : undefined;
      },
      boots(1, 60_000),
    );
    expect(device.board).toBe(BOARD);
    expect(device.inventory).toMatchObject({ architecture: 'arm64' });
  }, 1_200_000);

  it('rolls out the next version: slot b, tried once by the initramfs, committed', async () => {
    await build('pi-minimal-next');
    const id = await rollOut('pi-minimal-next');
    // The agent writes slot b, arms trial.txt, points config.txt at slot b and restarts.
    await vm.waitForExit(boots(10, 600_000));
    const consoleFrom = vm.consoleText.length;
    expect(await vm.boot()).toBe('b');
    await vm.waitForConsole(/boardfleet: trial of slot b, first boot/, boots(2, 300_000), consoleFrom);
    const done = await eventually(
      'the rollout completed',
      async () => {
        const status = await rollout(id);
        return status.state === 'completed' ? status : undefined;
      },
      boots(3, 300_000),
    );
    expect(done.devices).toMatchObject([{ deviceId, state: 'committed' }]);
    await eventually(
      'config.txt naming slot b, trial.txt gone',
      async () =>
        (slotOfBootConfig((await vm.readBootFile(BOOT_CONFIG.committed)) ?? '') === 'b' &&
          (await vm.readBootFile(BOOT_CONFIG.trial)) === null) ||
        undefined,
      30_000,
    );
  }, 1_200_000);

  it('falls back from a slot whose agent never comes up: the next power cycle boots the old slot again', async () => {
    await build('pi-minimal-broken');
    const id = await rollOut('pi-minimal-broken');
    await vm.waitForExit(boots(10, 600_000));
    let consoleFrom = vm.consoleText.length;
    expect(await vm.boot()).toBe('a');
    await vm.waitForConsole(/boardfleet: this image has no agent/, boots(2, 300_000), consoleFrom);
    // A hung device, which a watchdog or a person power-cycles. config.txt still names slot a:
    // the initramfs finds its trial already booted once, points config.txt back and restarts.
    await vm.powerOff();
    consoleFrom = vm.consoleText.length;
    expect(await vm.boot()).toBe('a');
    await vm.waitForConsole(
      /boardfleet: trial of slot a failed, back to slot b/,
      boots(2, 300_000),
      consoleFrom,
    );
    await vm.waitForExit(boots(1, 120_000));
    expect(await vm.boot()).toBe('b');
    const done = await eventually(
      'the rollout paused with the device rolled back',
      async () => {
        const status = await rollout(id);
        return status.state === 'paused' && status.devices[0]?.state === 'rolled-back' ? status : undefined;
      },
      boots(3, 300_000),
    );
    expect(done.devices[0]!.reason).toMatch(/slot a did not come up in its trial boot; slot b runs again/);
    expect(vm.bootedSlots).toEqual(['a', 'b', 'a', 'a', 'b']);
  }, 1_200_000);

  async function download(artifactId: string): Promise<Response> {
    const response = await fetch(`${server.httpUrl}/api/v1/artifacts/${artifactId}/content`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect(response.status).toBe(200);
    return response;
  }
});
