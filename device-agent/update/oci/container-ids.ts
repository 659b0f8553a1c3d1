import { chmodSync, chownSync, lstatSync, type Stats } from 'node:fs';
import { dirname, relative } from 'node:path';
import { BoardfleetError } from '../../../protocol/errors.ts';
import type { IdMapping } from './runtime-config.ts';

/** Container ids 0…65535, as many as /etc/subuid gives a user. */
const ID_COUNT = 65536;

/**
 * Who a container is on this device: its user namespace's mappings, the host owner its unpacked
 * files get, and the host group of its root, which is the one that must pass through the folders
 * above its rootfs (the runtime resolves the rootfs path after entering the user namespace).
 */
export interface ContainerIds {
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  /** The host group of the container's root: the folders above the roots let it pass. */
  rootGroup: number;
  /** The host owner of a layer entry owned by `uid:gid` in the image; null: keep the agent's. */
  hostOwner(path: string, uid: number, gid: number): { uid: number; gid: number } | null;
}

/**
 * An agent running as root maps container ids 0…65535 onto host ids `base…`, and unpacked files
 * get the shifted owner, as Docker's userns-remap does: root in the container owns its files and
 * is nobody on the device. An agent that is not root can map only itself, and owns every file.
 */
export function containerIds(base: number): ContainerIds {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid !== 0) {
    return {
      uidMappings: [{ containerID: 0, hostID: uid, size: 1 }],
      gidMappings: [{ containerID: 0, hostID: gid, size: 1 }],
      rootGroup: gid,
      hostOwner: () => null,
    };
  }
  const range = [{ containerID: 0, hostID: base, size: ID_COUNT }];
  return {
    uidMappings: range,
    gidMappings: range,
    rootGroup: base,
    hostOwner: (path, owner, group) => {
      if (owner >= ID_COUNT || group >= ID_COUNT)
        throw new BoardfleetError(
          'bad-oci-image',
          `layer entry ${path} is owned by ${owner}:${group}, outside the ids 0…${ID_COUNT - 1} a container maps`,
        );
      return { uid: base + owner, gid: base + group };
    },
  };
}

const mayPass = (stats: Stats, group: number) =>
  (stats.mode & 0o001) !== 0 || (stats.gid === group && (stats.mode & 0o010) !== 0);

/**
 * Lets the containers' root group, and no one else, pass through each folder from `root` up to
 * `outermost` (the agent's private data dir): group `group`, mode `…--x---` for the group, the
 * owner's bits and others' bits unchanged. Docker does the same to /var/lib/docker under
 * userns-remap (0710, group the remapped root), after CVE-2021-21284 found 0711 too wide.
 */
export function letContainersPass(root: string, outermost: string, group: number): void {
  if (relative(outermost, root).startsWith('..')) throw new Error(`${root} is not under ${outermost}`);
  for (let dir = root; ; dir = dirname(dir)) {
    const stats = lstatSync(dir);
    if (stats.gid !== group) chownSync(dir, stats.uid, group);
    chmodSync(dir, (stats.mode & 0o7707) | 0o010);
    if (dir === outermost) return;
  }
}

/** The first folder from `path` up to `/` that a container's root (host group `group`) may not pass, or null. */
export function closedAncestor(path: string, group: number): { dir: string; mode: number } | null {
  for (let dir = path; ; dir = dirname(dir)) {
    const stats = lstatSync(dir);
    if (!mayPass(stats, group)) return { dir, mode: stats.mode & 0o777 };
    if (dir === dirname(dir)) return null;
  }
}
