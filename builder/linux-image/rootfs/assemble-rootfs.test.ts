import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { beforeAll, describe, expect, it } from 'vitest';
import { getLinuxBoard } from '../../../boards/board-catalogue.ts';
import { sha256File } from '../../../lib/hash.ts';
import { walkTree } from '../../disk/file-tree.ts';
import type { ImageRecipe } from '../../recipe/linux-image-recipe.ts';
import { loadRecipeOfKind, recipePath } from '../../recipe/recipe.ts';
import { assembleRootfs, rootfsPackages } from './assemble-rootfs.ts';
import { type FakeInputs, writeFakeInputs } from './doubles/fake-packages.ts';

const loadRecipe = (file: string) => loadRecipeOfKind(file, 'linux-image');

let work: string;
let inputs: FakeInputs;
let recipe: ImageRecipe;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'rootfs-'));
  inputs = await writeFakeInputs(join(work, 'inputs'));
  const recipeDirectory = join(work, 'recipe');
  mkdirSync(join(recipeDirectory, 'app'), { recursive: true });
  writeFileSync(join(recipeDirectory, 'app/boardfleet-app.json'), '{"start":["node","app.mjs"]}\n');
  writeFileSync(join(recipeDirectory, 'app/app.mjs'), "console.log('app');\n");
  await tar.c({ file: join(recipeDirectory, 'app.tar.gz'), cwd: join(recipeDirectory, 'app'), gzip: true }, [
    'boardfleet-app.json',
    'app.mjs',
  ]);
  writeFileSync(join(recipeDirectory, 'sensors.conf'), 'interval=5\n');
  writeFileSync(
    join(recipeDirectory, 'test.yaml'),
    [
      'kind: linux-image',
      'name: test-image',
      'version: 2.1.0',
      'packages: [i2c-tools]',
      'overlay:',
      '  - { path: /etc/motd, content: "hello\\n" }',
      "  - { path: /etc/sensors/sensors.conf, source: sensors.conf, mode: '0600' }",
      '  - { path: /usr/local/bin/hello, content: "#!/bin/sh\\necho hello\\n", mode: \'0755\' }',
      'appBundle: { path: app.tar.gz, name: sensors, version: 1.2.0 }',
      'partitions: { boot: 128, root: 128, data: 64 }',
      'hostname: sensor-hub',
      'caCertificates: true',
    ].join('\n'),
  );
  recipe = loadRecipe(join(recipeDirectory, 'test.yaml'));
});

async function assemble(dir: string, overrides: Partial<Parameters<typeof assembleRootfs>[0]> = {}) {
  return assembleRootfs({
    dir,
    board: getLinuxBoard('rpi-4b'),
    recipe,
    packageTrees: inputs.packageTrees,
    nodeBinary: inputs.nodeBinary,
    agentBundle: inputs.agentBundle,
    rebootHelper: inputs.rebootHelper,
    ...overrides,
  });
}

const mode = (path: string) => lstatSync(path).mode & 0o7777;

describe('root filesystem assembly', () => {
  it('asks for busybox, the libraries Node needs, the certificates and the recipe packages', () => {
    expect(rootfsPackages(recipe)).toEqual([
      'busybox-static',
      'ca-certificates',
      'i2c-tools',
      'libc6',
      'libgcc-s1',
      'libstdc++6',
    ]);
    expect(rootfsPackages(loadRecipe(recipePath('pi-minimal')))).toEqual([
      'busybox-static',
      'libc6',
      'libgcc-s1',
      'libstdc++6',
    ]);
  });

  it('copies exactly the libraries the ELF headers ask for, with their symlinks', async () => {
    const dir = join(work, 'libraries');
    const result = await assemble(dir);
    expect(result.libraries).toEqual([
      'lib/aarch64-linux-gnu/ld-linux-aarch64.so.1',
      'lib/aarch64-linux-gnu/libc.so.6',
      'lib/aarch64-linux-gnu/libdl.so.2',
      'lib/aarch64-linux-gnu/libgcc_s.so.1',
      'lib/aarch64-linux-gnu/libm.so.6',
      'lib/aarch64-linux-gnu/libpthread.so.0',
      'lib/ld-linux-aarch64.so.1',
      'usr/lib/aarch64-linux-gnu/libi2c.so.0',
      'usr/lib/aarch64-linux-gnu/libi2c.so.0.1.1',
      'usr/lib/aarch64-linux-gnu/libstdc++.so.6',
      'usr/lib/aarch64-linux-gnu/libstdc++.so.6.0.30',
    ]);
    expect(readlinkSync(join(dir, 'lib/ld-linux-aarch64.so.1'))).toBe(
      'aarch64-linux-gnu/ld-linux-aarch64.so.1',
    );
    expect(readlinkSync(join(dir, 'usr/lib/aarch64-linux-gnu/libstdc++.so.6'))).toBe('libstdc++.so.6.0.30');
    // libc6 ships librt, which nothing here needs.
    expect(() => lstatSync(join(dir, 'lib/aarch64-linux-gnu/librt.so.1'))).toThrow();
    expect(result.packagesUsed).toEqual([
      'busybox-static',
      'ca-certificates',
      'i2c-tools',
      'libc6',
      'libgcc-s1',
      'libi2c0',
      'libstdc++6',
    ]);
  });

  it('lays out busybox, Node, the agent, the init and the slot devices with fixed modes', async () => {
    const dir = join(work, 'layout');
    const result = await assemble(dir);
    expect(mode(join(dir, 'bin/busybox'))).toBe(0o755);
    expect(readlinkSync(join(dir, 'bin/sh'))).toBe('busybox');
    expect(readlinkSync(join(dir, 'bin/udhcpc'))).toBe('busybox');
    expect(result.applets).toContain('mkfifo');
    expect(mode(join(dir, 'usr/bin/node'))).toBe(0o755);
    expect(readFileSync(join(dir, 'usr/bin/node'))).toEqual(readFileSync(inputs.nodeBinary));
    expect(readFileSync(join(dir, 'opt/boardfleet/agent.mjs'), 'utf8')).toBe("console.log('agent');\n");
    expect(mode(join(dir, 'usr/sbin/boardfleet-reboot'))).toBe(0o755);
    expect(mode(join(dir, 'sbin/init'))).toBe(0o755);
    expect(readFileSync(join(dir, 'sbin/init'), 'utf8')).toContain('DATA_DEVICE=/dev/mmcblk0p4\n');
    expect(mode(join(dir, 'usr/share/udhcpc/default.script'))).toBe(0o755);
    expect(JSON.parse(readFileSync(join(dir, 'etc/boardfleet/slots.json'), 'utf8'))).toEqual({
      boot: '/dev/mmcblk0p1',
      a: '/dev/mmcblk0p2',
      b: '/dev/mmcblk0p3',
      data: '/dev/mmcblk0p4',
    });
    expect(JSON.parse(readFileSync(join(dir, 'etc/boardfleet/image.json'), 'utf8'))).toEqual({
      schemaVersion: 1,
      name: 'test-image',
      version: '2.1.0',
      board: 'rpi-4b',
      // Debian's kernel does not pass "0 tryboot" on: the agent must arm the initramfs trial.
      abTrial: 'initramfs-trial',
    });
    for (const mount of ['dev', 'run', 'data', 'boot/firmware']) expect(mode(join(dir, mount))).toBe(0o755);
    expect(mode(join(dir, 'proc'))).toBe(0o555);
    expect(mode(join(dir, 'tmp'))).toBe(0o1777);
    expect(mode(join(dir, 'root'))).toBe(0o700);
    expect(readFileSync(join(dir, 'etc/passwd'), 'utf8')).toMatch(/^root:x:0:0:root:\/root:\/bin\/sh\n/);
    expect(readFileSync(join(dir, 'etc/hostname'), 'utf8')).toBe('sensor-hub\n');
    expect(readlinkSync(join(dir, 'etc/resolv.conf'))).toBe('../run/resolv.conf');
    expect(readFileSync(join(dir, 'etc/os-release'), 'utf8')).toContain(
      'PRETTY_NAME="Boardfleet test-image 2.1.0"',
    );
    // Certificates in name order, each ending with a newline.
    expect(readFileSync(join(dir, 'etc/ssl/certs/ca-certificates.crt'), 'utf8')).toBe('AAA\nBBB\n');
  });

  it('brings the recipe packages in whole, without documentation', async () => {
    const dir = join(work, 'packages');
    await assemble(dir);
    expect(mode(join(dir, 'usr/sbin/i2cdetect'))).toBe(0o755);
    expect(lstatSync(join(dir, 'usr/lib/firmware/coprocessor.elf')).isFile()).toBe(true);
    expect(() => lstatSync(join(dir, 'usr/share/doc'))).toThrow();
    expect(() => lstatSync(join(dir, 'usr/share/man'))).toThrow();
  });

  it('writes the overlay with its modes and unpacks the app for the first boot', async () => {
    const dir = join(work, 'overlay');
    await assemble(dir);
    expect(readFileSync(join(dir, 'etc/motd'), 'utf8')).toBe('hello\n');
    expect(mode(join(dir, 'etc/motd'))).toBe(0o644);
    expect(readFileSync(join(dir, 'etc/sensors/sensors.conf'), 'utf8')).toBe('interval=5\n');
    expect(mode(join(dir, 'etc/sensors/sensors.conf'))).toBe(0o600);
    expect(mode(join(dir, 'usr/local/bin/hello'))).toBe(0o755);
    expect(readFileSync(join(dir, 'opt/boardfleet/app/sensors-1.2.0/boardfleet-app.json'), 'utf8')).toContain(
      'app.mjs',
    );
    expect(readFileSync(join(dir, 'sbin/init'), 'utf8')).toContain('APP_RELEASE=sensors-1.2.0\n');
  });

  it('gives the same tree twice, whatever the umask', async () => {
    const first = join(work, 'same-1');
    const second = join(work, 'same-2');
    await assemble(first);
    const umask = process.umask(0o077);
    try {
      await assemble(second);
    } finally {
      process.umask(umask);
    }
    const describeTree = async (root: string) =>
      Promise.all(
        (await walkTree(root)).map(async (entry) => ({
          ...entry,
          sha256: entry.type === 'file' ? await sha256File(join(root, entry.path)) : null,
        })),
      );
    expect(await describeTree(second)).toEqual(await describeTree(first));
  });

  it('writes init scripts that the shell can parse', async () => {
    const dir = join(work, 'scripts');
    await assemble(dir);
    for (const script of [
      'sbin/init',
      'usr/lib/boardfleet/network-interface.sh',
      'usr/share/udhcpc/default.script',
    ]) {
      expect(() => execFileSync('dash', ['-n', join(dir, script)])).not.toThrow();
    }
  });

  it('refuses a Node runtime built for another machine, naming both', async () => {
    await expect(assemble(join(work, 'wrong-node'), { nodeBinary: process.execPath })).rejects.toThrow(
      /the Node runtime \(.*\) is built for ELF machine 62; rpi-4b needs arm64 \(machine 183\)/,
    );
  });

  it('names the package a needed library should come from, and the package the build did not fetch', async () => {
    const withoutGcc = inputs.packageTrees.filter((tree) => tree.name !== 'libgcc-s1');
    await expect(assemble(join(work, 'no-libgcc'), { packageTrees: withoutGcc })).rejects.toThrow(
      'the Node runtime needs libgcc_s.so.1, which none of the packages (busybox-static, ca-certificates, i2c-tools, libc6, libi2c0, libstdc++6)',
    );
    const withoutBusybox = inputs.packageTrees.filter((tree) => tree.name !== 'busybox-static');
    await expect(assemble(join(work, 'no-busybox'), { packageTrees: withoutBusybox })).rejects.toThrow(
      'the root filesystem needs the Debian package busybox-static (busybox is the shell and tools of the image), which the build did not fetch',
    );
  });

  it('refuses to write into a directory that already holds files', async () => {
    const dir = join(work, 'not-empty');
    mkdirSync(dir);
    writeFileSync(join(dir, 'stale'), '');
    await expect(assemble(dir)).rejects.toThrow(
      `${dir} is not empty (stale…): assemble into a new directory`,
    );
  });
});
