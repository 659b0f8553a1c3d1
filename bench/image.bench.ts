// `npm run bench -- image [--board qemu-virt-arm64] [--recipe pi-minimal] [--boots 3]`: an image
// build with empty step caches (downloads stay cached: the network is not what is measured), the
// same build warm, the sizes of what it makes, and boot to network and to agent online under qemu
// (TCG), on -M virt and, with the recipe built for rpi-3b, on the emulated Pi 3 (-M raspi3b); the
// baseline is a plain copy of the same output files, the I/O floor of writing them at all.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import type { BuildReporter } from '../builder/build-runner.ts';
import { buildImageWithDetails } from '../builder/linux-image/image-build.ts';
import { recipePath } from '../builder/recipe/recipe.ts';
import { defaultCacheDir } from '../builder/steps/cached-step.ts';
import { type PiMachine, QemuPiFirmware } from '../test/support/qemu-pi.ts';
import { startBenchServer } from './bench-server.ts';

const exec = promisify(execFile);

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      board: { type: 'string', default: 'qemu-virt-arm64' },
      recipe: { type: 'string', default: 'pi-minimal' },
      boots: { type: 'string', default: '3' },
    },
  });
  const work = mkdtempSync(join(tmpdir(), 'image-bench-'));
  const recipeFile = recipePath(values.recipe);
  const reporter: BuildReporter = { signal: new AbortController().signal, log: () => {}, progress: () => {} };
  const build = (board = values.board) =>
    buildImageWithDetails(
      { recipeFile, board, cacheDir: defaultCacheDir(), stepsDir: join(work, 'steps') },
      reporter,
    );
  process.stdout.write(`image benchmark: ${values.recipe} for ${values.board}\n\n`);
  try {
    let started = performance.now();
    const cold = await build();
    const coldSeconds = (performance.now() - started) / 1000;
    started = performance.now();
    const warm = await build();
    const warmSeconds = (performance.now() - started) / 1000;
    if (warm.inputsHash !== cold.inputsHash) throw new Error('the warm build had other inputs');

    started = performance.now();
    for (const file of [cold.diskImage, cold.updatePayload]) {
      await exec('cp', ['--sparse=always', file, join(work, 'copy')]);
    }
    const copySeconds = (performance.now() - started) / 1000;

    const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
    const allocated = (file: string) => statSync(file).blocks * 512;
    process.stdout.write(
      [
        `build, empty step cache (downloads cached): ${coldSeconds.toFixed(1)} s`,
        `build, warm (every step reused):           ${warmSeconds.toFixed(2)} s  (${warm.reusedSteps.join(', ')})`,
        `baseline, plain copy of disk image + payload: ${copySeconds.toFixed(2)} s`,
        '',
        `disk image: ${mib(statSync(cold.diskImage).size)} apparent, ${mib(allocated(cold.diskImage))} written, ${mib(statSync(cold.diskImageCompressed).size)} compressed (${extname(cold.diskImageCompressed)})`,
        `update payload (root slot + boot files, uncompressed tar): ${mib(statSync(cold.updatePayload).size)}`,
        '',
      ].join('\n'),
    );

    const boots = Number(values.boots);
    printBoots('-M virt, cortex-a72', await bootToOnline(cold.diskImage, work, boots, 'virt'));
    const pi = await build('rpi-3b');
    printBoots('-M raspi3b, usb-net', await bootToOnline(pi.diskImage, work, boots, 'raspi3b'));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function printBoots(machine: string, times: BootTimes[]): void {
  const median = (seconds: number[]) => [...seconds].sort((a, b) => a - b)[Math.floor(seconds.length / 2)]!;
  for (const [what, seconds] of [
    ['network', times.map((time) => time.network)],
    ['agent online', times.map((time) => time.online)],
  ] as const) {
    process.stdout.write(
      `boot to ${what} under qemu (TCG, ${machine}), ${seconds.length} boots: ` +
        `median ${median(seconds).toFixed(1)} s (${seconds.map((s) => s.toFixed(1)).join(', ')})\n`,
    );
  }
}

interface BootTimes {
  /** Seconds until the init says the interface has a DHCP address. */
  network: number;
  online: number;
}

/** Boots a fresh copy of the disk each time, provisioned against a server on this machine. */
async function bootToOnline(
  diskImage: string,
  work: string,
  boots: number,
  machine: PiMachine,
): Promise<BootTimes[]> {
  // The guest reaches the host's loopback as 10.0.2.2: the certificate names it, as a device's does.
  const server = await startBenchServer({ BOARDFLEET_TLS_NAMES: 'localhost,127.0.0.1,10.0.2.2' });
  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${server.httpUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return (await response.json()) as T;
  };
  const times: BootTimes[] = [];
  try {
    for (let boot = 0; boot < boots; boot++) {
      const disk = join(work, `disk-${boot}.img`);
      copyFileSync(diskImage, disk);
      const { token } = await api<{ token: string }>('POST', '/api/v1/provisioning-tokens', {
        name: `bench-${boot}`,
      });
      const vm = new QemuPiFirmware(disk, { machine });
      const name = `bench-vm-${boot}`;
      await vm.writeBootFile(
        'boardfleet.json',
        JSON.stringify({ server: `https://10.0.2.2:${server.httpsPort}`, provisioningToken: token, name }),
      );
      const started = performance.now();
      await vm.boot();
      let network = 0;
      try {
        for (;;) {
          if (!network && /boardfleet: \S+ has address/.test(vm.consoleText))
            network = (performance.now() - started) / 1000;
          const { devices } = await api<{ devices: Array<{ name: string; online: boolean }> }>(
            'GET',
            '/api/v1/devices?limit=100',
          );
          if (devices.some((device) => device.name === name && device.online)) break;
          if (performance.now() - started > 300_000)
            throw new Error(`no agent online; console:\n${vm.consoleText.slice(-2000)}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        times.push({ network, online: (performance.now() - started) / 1000 });
      } finally {
        await vm.dispose();
        rmSync(disk, { force: true });
      }
    }
  } finally {
    await server.dispose();
  }
  return times;
}
