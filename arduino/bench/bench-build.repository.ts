import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BoardfleetError } from '../../protocol/errors.ts';
import { AvrToolchain } from '../build/avr-toolchain.repository.ts';
import { ARDUINO_BOOTLOADER_SOURCES, bootloaderRecipe } from './bootloaders.ts';

const run = promisify(execFile);
const HARNESS_SOURCE = new URL('./harness/bench-board.c', import.meta.url).pathname;
/** What building the harness needs, each with the file that proves it and its Debian package. */
const HARNESS_REQUIREMENTS: Array<[string, string]> = [
  ['/usr/bin/gcc', 'gcc'],
  ['/usr/bin/pkg-config', 'pkg-config'],
  ['/usr/include/simavr/sim_avr.h', 'libsimavr-dev'],
  ['/usr/include/libelf.h', 'libelf-dev'],
];

export function defaultCacheDirectory(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'boardfleet');
}

export interface BuiltBootloader {
  hexPath: string;
  address: number;
  bytes: number;
}

/**
 * Builds what a simulated board runs — our simavr harness and the bootloaders, from Debian's
 * sources — once, and keeps them in a cache keyed by compiler, flags and source, so a second
 * board starts at once and two builds of the same inputs are the same file.
 */
export class BenchBuild {
  constructor(
    private readonly cacheDirectory = defaultCacheDirectory(),
    private readonly avr = new AvrToolchain(),
  ) {}

  /** The harness executable, compiled on first use. */
  async harness(): Promise<string> {
    const missing = HARNESS_REQUIREMENTS.filter(([proof]) => !existsSync(proof)).map(([, name]) => name);
    if (missing.length > 0) {
      throw new BoardfleetError(
        'toolchain-missing',
        `Simulated boards need a C compiler and simavr to build their harness. Install them with: sudo apt-get install ${missing.join(' ')}`,
      );
    }
    const pkgConfig = (await run('pkg-config', ['--cflags', '--libs', 'simavr'])).stdout.trim().split(/\s+/);
    const flags = ['-O2', '-Wall', ...pkgConfig, '-lelf'];
    const key = await this.key('gcc', [HARNESS_SOURCE], flags);
    const binary = join(this.cacheDirectory, 'harness', `bench-board-${key}`);
    if (existsSync(binary)) return binary;
    await this.produce(binary, async (output) => {
      try {
        await run('gcc', ['-o', output, HARNESS_SOURCE, ...flags]);
      } catch (error) {
        throw new BoardfleetError(
          'build-failed',
          `Building the simulator harness failed:\n${(error as { stderr?: string }).stderr ?? error}`,
        );
      }
    });
    return binary;
  }

  /** A bootloader built from Debian's arduino-core-avr sources, as an Intel HEX file. */
  async bootloader(id: string): Promise<BuiltBootloader> {
    const recipe = bootloaderRecipe(id);
    const source = join(ARDUINO_BOOTLOADER_SOURCES, recipe.source);
    if (!existsSync(source)) {
      throw new BoardfleetError(
        'toolchain-missing',
        `The bootloader sources are not installed (${source} missing). Install them with: sudo apt-get install arduino-core-avr`,
      );
    }
    await this.avr.ensureInstalled(['avr-gcc', 'avr-objcopy', 'avr-size']);
    const flags = [`-mmcu=${recipe.mcu}`, ...recipe.flags];
    const hexPath = join(
      this.cacheDirectory,
      'bootloaders',
      `${id}-${await this.key('avr-gcc', [source], flags)}.hex`,
    );
    if (!existsSync(hexPath)) {
      await this.produce(hexPath, async (output) => {
        const work = await mkdtemp(`${output}.work-`);
        try {
          const elf = join(work, 'bootloader.elf');
          // Built from its own folder by relative name, so no absolute path reaches the image.
          await this.avr.run(
            'avr-gcc',
            [...flags, `-I.`, '-o', elf, recipe.source.split('/')[1]!],
            join(ARDUINO_BOOTLOADER_SOURCES, recipe.source.split('/')[0]!),
          );
          await this.avr.run(
            'avr-objcopy',
            ['-j', '.text', '-j', '.data', '-j', '.version', '-O', 'ihex', elf, join(work, 'raw.hex')],
            work,
          );
          // The start-address record means nothing to a chip, and simavr's reader warns about it.
          const hex = (await readFile(join(work, 'raw.hex'), 'utf8'))
            .split('\n')
            .filter((line) => !line.startsWith(':04000003'))
            .join('\n');
          await writeFile(output, hex);
        } finally {
          await rm(work, { recursive: true, force: true });
        }
      });
    }
    const bytes = await imageBytes(hexPath);
    if (bytes > recipe.maxBytes) {
      throw new BoardfleetError(
        'build-failed',
        `The ${id} bootloader came out at ${bytes} bytes, more than its ${recipe.maxBytes}-byte boot section`,
      );
    }
    return { hexPath, address: recipe.address, bytes };
  }

  private async key(compiler: string, sources: string[], flags: string[]): Promise<string> {
    const hash = createHash('sha256');
    hash.update((await run(compiler, ['--version'])).stdout);
    hash.update(JSON.stringify(flags));
    for (const source of sources) hash.update(await readFile(source));
    return hash.digest('hex').slice(0, 16);
  }

  /** Builds into a temporary name and renames, so a concurrent start never runs half a file. */
  private async produce(path: string, build: (output: string) => Promise<void>): Promise<void> {
    await mkdir(join(path, '..'), { recursive: true });
    const partial = `${path}.${process.pid}.partial`;
    try {
      await build(partial);
      await rename(partial, path);
    } finally {
      await rm(partial, { force: true });
    }
  }
}

/** Bytes of code and data in an Intel HEX file (its data records). */
async function imageBytes(hexPath: string): Promise<number> {
  let bytes = 0;
  for (const line of (await readFile(hexPath, 'utf8')).split('\n')) {
    if (line.startsWith(':') && line.slice(7, 9) === '00') bytes += Number.parseInt(line.slice(1, 3), 16);
  }
  return bytes;
}
