import { readFile } from 'node:fs/promises';
import { BoardfleetError } from '../../../protocol/errors.ts';
import { ELF_MACHINE, readElfInfo } from '../../native/elf-file.ts';
import type { TreeWriter } from './tree-writer.ts';

/** Applets the initramfs's /init runs. */
export const INITRAMFS_APPLETS =
  'cat dmesg insmod ls mount mv reboot rm sh sleep switch_root sync umount usleep'.split(' ');

/** Applets of the root filesystem: what /sbin/init and the udhcpc script run, and a small toolbox. */
export const ROOTFS_APPLETS = (
  '[ awk cat chmod cp cut date dd df dmesg du env false find free grep gunzip gzip halt ' +
  'head hexdump hostname id ifconfig ip kill less ln ls lsmod md5sum mkdir mkfifo more ' +
  'mount mv nc netstat nslookup ping poweroff ps pwd readlink reboot rm rmdir route sed ' +
  'setsid sh sha256sum sleep sort stat sync tail tar tee test timeout top touch tr true ' +
  'udhcpc umount uname uptime usleep vi wc wget which xargs'
).split(' ');

/**
 * The applet names compiled into a busybox binary. busybox keeps them as one sorted run of
 * NUL-terminated names starting with `[` and `[[`; reading it here checks the applets the init
 * scripts use without running an arm64 binary on the build host.
 */
export async function readBusyboxApplets(path: string): Promise<string[]> {
  const binary = await readFile(path);
  const start = binary.indexOf(Buffer.from('\0[\0[[\0'));
  const end = start < 0 ? -1 : binary.indexOf(Buffer.from('\0\0'), start + 1);
  if (start < 0 || end < 0) {
    throw new BoardfleetError('busybox-invalid', `${path} holds no busybox applet list: is it busybox?`);
  }
  return binary
    .subarray(start + 1, end)
    .toString('latin1')
    .split('\0');
}

/**
 * Installs a static busybox at `bin/busybox` with a symlink per applet in `bin/` (skipping any
 * name a package already put in bin/ or usr/bin/). Fails naming the applets the binary lacks.
 */
export async function installBusybox(
  tree: TreeWriter,
  binary: string,
  applets: string[],
  architecture: keyof typeof ELF_MACHINE,
): Promise<string[]> {
  const elf = await readElfInfo(binary);
  if (elf.machine !== ELF_MACHINE[architecture]) {
    throw new BoardfleetError(
      'busybox-wrong-architecture',
      `${binary} is built for ELF machine ${elf.machine}, not ${architecture} (${ELF_MACHINE[architecture]})`,
    );
  }
  if (elf.interpreter !== null) {
    throw new BoardfleetError(
      'busybox-not-static',
      `${binary} is dynamically linked (${elf.interpreter}): use busybox-static's /bin/busybox`,
    );
  }
  const available = new Set(await readBusyboxApplets(binary));
  const missing = applets.filter((applet) => !available.has(applet));
  if (missing.length > 0) {
    throw new BoardfleetError(
      'busybox-missing-applets',
      `${binary} lacks the applets ${missing.join(', ')}, which the image's init scripts use`,
    );
  }
  await tree.copy(binary, 'bin/busybox', 0o755);
  const linked: string[] = [];
  for (const applet of [...applets].sort()) {
    if ((await tree.exists(`bin/${applet}`)) || (await tree.exists(`usr/bin/${applet}`))) continue;
    await tree.symlink(`bin/${applet}`, 'busybox');
    linked.push(applet);
  }
  return linked;
}
