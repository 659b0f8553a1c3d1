import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { BoardfleetError } from '../../../protocol/errors.ts';

export const DYNSEC_PLUGIN_FILE = 'mosquitto_dynamic_security.so';
const MOSQUITTO_PACKAGE = 'mosquitto';

/** Where distributions put the plugin when dpkg cannot tell (another distribution, a source build). */
const KNOWN_PLUGIN_DIRECTORIES = [
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/usr/lib/arm-linux-gnueabihf',
  '/usr/lib/i386-linux-gnu',
  '/usr/lib',
  '/usr/lib64',
  '/usr/local/lib',
];

export interface MosquittoInstall {
  /** The broker executable, absolute when found (Debian keeps it in /usr/sbin, off most users' PATH). */
  broker: string;
  plugin: string;
}

/**
 * Finds Mosquitto's dynamic-security plugin and broker: first in the files of Debian's package,
 * then in the usual places. Fails naming the package to install.
 */
export function findMosquitto(
  options: { packageName?: string; pluginDirectories?: string[] } = {},
): MosquittoInstall {
  const packaged = packageFiles(options.packageName ?? MOSQUITTO_PACKAGE);
  const plugin =
    packaged.find((file) => file.endsWith(`/${DYNSEC_PLUGIN_FILE}`) && readable(file)) ??
    (options.pluginDirectories ?? KNOWN_PLUGIN_DIRECTORIES)
      .map((directory) => join(directory, DYNSEC_PLUGIN_FILE))
      .find((file) => readable(file));
  if (!plugin) {
    throw new BoardfleetError(
      'tool-missing',
      `Mosquitto's dynamic-security plugin (${DYNSEC_PLUGIN_FILE}) is not installed: ` +
        `install Mosquitto 2.0 or newer (on Debian: sudo apt-get install ${MOSQUITTO_PACKAGE})`,
    );
  }
  const broker =
    packaged.find((file) => /\/s?bin\/mosquitto$/.test(file) && readable(file, constants.X_OK)) ??
    [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin']
      .filter((directory) => directory !== '')
      .map((directory) => join(directory, 'mosquitto'))
      .find((file) => readable(file, constants.X_OK)) ??
    'mosquitto';
  return { broker, plugin };
}

/** The files a Debian package installed; none without dpkg or the package. */
function packageFiles(name: string): string[] {
  try {
    return execFileSync('dpkg', ['-L', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')
      .map((line) => line.trim());
  } catch {
    return [];
  }
}

function readable(path: string, mode = constants.R_OK): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}
