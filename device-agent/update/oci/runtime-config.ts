import { BoardfleetError } from '../../../protocol/errors.ts';
import type { ImageRunConfig } from './oci-image.ts';

/** One range of the user namespace: container ids `containerID…` are host ids `hostID…`. */
export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface RuntimeConfigOptions {
  /** The unpacked root, absolute. */
  rootfs: string;
  hostname: string;
  /** The user namespace: the container's user and group ids seen from the host (never host root). */
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  /** The configuration variables, over the image's own `Env`. */
  environment: Readonly<Record<string, string>>;
  /** `etc/passwd` and `etc/group` of the image, to resolve a `User` given by name. */
  passwd?: string;
  group?: string;
  /** Host files the container reads for its network (host network: resolv.conf, hosts) that exist. */
  hostNetworkFiles: string[];
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Where the runtime mounts something in the read-only root: the agent creates them when unpacking. */
export const MOUNT_POINTS = ['proc', 'dev', 'sys', 'tmp', 'run'];

const refuse = (message: string): never => {
  throw new BoardfleetError('bad-oci-image', message);
};

/** The id of `name` in a passwd or group file (`name:x:id:…`), or undefined. */
function idByName(file: string | undefined, name: string): number | undefined {
  const line = (file ?? '').split('\n').find((entry) => entry.split(':')[0] === name);
  const id = line?.split(':')[2];
  return id !== undefined && /^\d+$/.test(id) ? Number(id) : undefined;
}

/** The primary group of a user in a passwd file, or undefined. */
function primaryGroup(passwd: string | undefined, uid: number): number | undefined {
  const line = (passwd ?? '').split('\n').find((entry) => entry.split(':')[2] === String(uid));
  const gid = line?.split(':')[3];
  return gid !== undefined && /^\d+$/.test(gid) ? Number(gid) : undefined;
}

/**
 * The image's `User` (`""`, `uid`, `uid:gid`, `name`, `name:group`) as numeric ids, names looked
 * up in the image's own passwd and group files, as Docker does.
 */
export function containerUser(user: string | null | undefined, passwd?: string, group?: string) {
  const [userPart = '', groupPart] = (user ?? '').split(':');
  const uid = userPart === '' ? 0 : /^\d+$/.test(userPart) ? Number(userPart) : idByName(passwd, userPart);
  if (uid === undefined) return refuse(`the image's user ${userPart} is not in its /etc/passwd`);
  const gid =
    groupPart === undefined || groupPart === ''
      ? (primaryGroup(passwd, uid) ?? (userPart === '' ? 0 : uid))
      : /^\d+$/.test(groupPart)
        ? Number(groupPart)
        : (idByName(group, groupPart) ?? refuse(`the image's group ${groupPart} is not in its /etc/group`));
  return { uid, gid };
}

/** `Env` entries (`NAME=value`) with the configuration variables over them and a PATH when none. */
export function containerEnvironment(
  imageEnv: readonly string[],
  environment: Readonly<Record<string, string>>,
) {
  const merged = new Map<string, string>([['PATH', DEFAULT_PATH]]);
  for (const entry of imageEnv) {
    const equals = entry.indexOf('=');
    if (equals > 0) merged.set(entry.slice(0, equals), entry.slice(equals + 1));
  }
  for (const [name, value] of Object.entries(environment)) merged.set(name, value);
  return [...merged].map(([name, value]) => `${name}=${value}`);
}

/** The image's `ExposedPorts` (`8080/tcp`): with the host's network they are the device's own ports. */
export function publishedPorts(image: ImageRunConfig): { port: number; protocol: 'tcp' | 'udp' }[] {
  return Object.keys(image.ExposedPorts ?? {}).flatMap((key) => {
    const match = /^(\d+)(?:\/(tcp|udp))?$/.exec(key);
    return match ? [{ port: Number(match[1]), protocol: (match[2] ?? 'tcp') as 'tcp' | 'udp' }] : [];
  });
}

/**
 * The OCI runtime `config.json` for an image. Choices where a device differs from a server:
 * - the host's network namespace: the image's exposed ports are the device's ports, with no
 *   port mapping or bridge to set up (a device runs one fleet's containers, not strangers');
 * - a user namespace mapping the container's ids onto unprivileged host ids, no capabilities and
 *   no new privileges: root in the container is nobody on the device (ports below 1024 included);
 * - a read-only root, with tmpfs on /tmp and /run for what the app writes;
 * - the configuration variables as environment, over the image's own `Env`.
 */
export function runtimeConfig(image: ImageRunConfig, options: RuntimeConfigOptions) {
  const args = [...(image.Entrypoint ?? []), ...(image.Cmd ?? [])];
  if (args.length === 0) refuse('the image has neither Entrypoint nor Cmd: nothing to run');
  const user = containerUser(image.User, options.passwd, options.group);
  const mapped = (id: number, ranges: IdMapping[]) =>
    ranges.some((range) => id >= range.containerID && id < range.containerID + range.size);
  if (!mapped(user.uid, options.uidMappings) || !mapped(user.gid, options.gidMappings))
    refuse(`the image's user ${user.uid}:${user.gid} is outside the ids the device maps for containers`);
  const tmpfs = (destination: string, extra: string[]) => ({
    destination,
    type: 'tmpfs',
    source: 'tmpfs',
    options: ['nosuid', 'nodev', ...extra],
  });
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user,
      args,
      env: containerEnvironment(image.Env ?? [], options.environment),
      cwd: image.WorkingDir || '/',
      noNewPrivileges: true,
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
    },
    root: { path: options.rootfs, readonly: true },
    hostname: options.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
      },
      tmpfs('/dev/shm', ['noexec', 'mode=1777', 'size=65536k']),
      // sysfs cannot be mounted in a user namespace that does not own the network namespace.
      {
        destination: '/sys',
        type: 'none',
        source: '/sys',
        options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'],
      },
      tmpfs('/tmp', ['mode=1777']),
      tmpfs('/run', ['mode=755']),
      ...options.hostNetworkFiles.map((file) => ({
        destination: file,
        type: 'none',
        source: file,
        options: ['rbind', 'ro'],
      })),
    ],
    linux: {
      namespaces: ['pid', 'ipc', 'uts', 'mount', 'user'].map((type) => ({ type })),
      uidMappings: options.uidMappings,
      gidMappings: options.gidMappings,
      maskedPaths: [
        '/proc/acpi',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/sched_debug',
        '/sys/firmware',
      ],
      readonlyPaths: [
        '/proc/asound',
        '/proc/bus',
        '/proc/fs',
        '/proc/irq',
        '/proc/sys',
        '/proc/sysrq-trigger',
      ],
    },
  };
}
