import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RECIPES_DIRECTORY } from '../../builder/recipe/recipe.ts';
import { sha256 } from '../../lib/hash.ts';
import type { BuildList } from '../../protocol/api/builds.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

/** avr-gcc on a loaded two-core machine: the Arduino core alone is a few dozen compiles. */
const SLOW = 300_000;
const FIXTURES = new URL('../../builder/mcu/fixtures/', import.meta.url).pathname;
const lines = (text: string) => text.split('\n').filter((line) => line.trim() !== '');

/**
 * Issue 19 item 7: `build` of a firmware recipe and of an Arduino sketch with the real avr-gcc,
 * through the real CLI process: what it prints (human and --json), what it writes, and how it
 * refuses what it cannot build. Assertions name lines, not whole outputs: a build may print more
 * (the libraries it used).
 */
describe('build for a microcontroller board, on this machine', { timeout: SLOW }, () => {
  let cli: CliRunner;
  let workDir: string;

  beforeAll(() => {
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-cli-build-'));
    cli = cliRunner({ cwd: workDir, timeoutMs: SLOW });
  });

  afterAll(() => {
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it(
    'builds the firmata recipe into --out with --json, then as people read it, to the same bytes',
    async () => {
      const jsonDir = join(workDir, 'firmata-json');
      const built = await cli.ok('build', 'firmata', '--board', 'uno', '--out', jsonDir, '--json');
      // Nothing but the JSON: no step lines for a script to skip.
      expect(built.stderr).toBe('');
      const result = JSON.parse(built.stdout) as Record<string, unknown> & { size: Record<string, number> };
      const hexPath = join(jsonDir, 'firmata.hex');
      expect(result).toMatchObject({
        name: 'firmata',
        board: 'uno',
        outDir: jsonDir,
        hexPath,
        elfPath: join(jsonDir, 'firmata.elf'),
        warnings: '',
        size: { flashLimit: 32256, ramLimit: 2048 },
      });
      expect(result.hexSha256).toBe(sha256(readFileSync(hexPath)));
      expect(result.durationMs).toBeGreaterThan(0);
      expect(result.size.flashBytes).toBeGreaterThan(1000);
      expect(result.size.flashBytes).toBeLessThan(32256);
      expect(existsSync(join(jsonDir, 'firmata.elf'))).toBe(true);

      const humanDir = join(workDir, 'firmata-human');
      const { stdout, stderr } = await cli.ok('build', 'firmata', '--board', 'uno', '--out', humanDir);
      expect(stdout).toMatch(new RegExp(`^Built firmata for uno in [\\d.]+ s, into ${humanDir}\\n`));
      expect(stdout).toContain(`  hex:  ${join(humanDir, 'firmata.hex')}\n`);
      expect(stdout).toContain(`  elf:  ${join(humanDir, 'firmata.elf')}\n`);
      expect(stdout).toContain(`  sha256 (hex): ${result.hexSha256 as string}\n`);
      expect(stdout).toContain(
        `  size: flash ${result.size.flashBytes} of 32256 bytes (${((result.size.flashBytes! / 32256) * 100).toFixed(1)}%), `,
      );
      expect(lines(stderr)).toEqual(expect.arrayContaining(['  compiling firmata…', '  linking…']));
    },
    SLOW,
  );

  it(
    'builds the firmata recipe for the Pico with arm-none-eabi-gcc into a .uf2 and .elf, --json and as people read it',
    async () => {
      const jsonDir = join(workDir, 'pico-json');
      const built = await cli.ok('build', 'firmata', '--board', 'pico', '--out', jsonDir, '--json');
      expect(built.stderr).toBe('');
      const result = JSON.parse(built.stdout) as Record<string, unknown> & { size: Record<string, number> };
      const uf2Path = join(jsonDir, 'firmata.uf2');
      expect(result).toMatchObject({
        name: 'firmata',
        board: 'pico',
        outDir: jsonDir,
        uf2Path,
        elfPath: join(jsonDir, 'firmata.elf'),
        warnings: '',
        size: { flashLimit: 2097152, ramLimit: 270336 },
      });
      expect(result.uf2Sha256).toBe(sha256(readFileSync(uf2Path)));
      expect(existsSync(join(jsonDir, 'firmata.elf'))).toBe(true);

      const { stdout, stderr } = await cli.ok('build', 'firmata', '--board', 'pico');
      const defaultDir = join(workDir, 'build', 'firmata', 'pico');
      expect(stdout).toMatch(new RegExp(`^Built firmata for pico in [\\d.]+ s, into ${defaultDir}\\n`));
      expect(stdout).toContain(`  uf2:  ${join(defaultDir, 'firmata.uf2')}\n`);
      expect(stdout).toContain(`  elf:  ${join(defaultDir, 'firmata.elf')}\n`);
      // Reproducible: the same bytes in another folder.
      expect(stdout).toContain(`  sha256 (uf2): ${result.uf2Sha256 as string}\n`);
      expect(stdout).toMatch(
        /^ {2}size: flash \d+ of 2097152 bytes \([\d.]+%\), RAM \d+ of 270336 bytes \([\d.]+%\)$/m,
      );
      expect(lines(stderr)).toEqual(
        expect.arrayContaining(['  compiling the stage-2 boot…', '  compiling firmata…', '  linking…']),
      );
    },
    SLOW,
  );

  it(
    'builds a sketch named by its .ino file into a flashable Intel HEX image',
    async () => {
      const outDir = join(workDir, 'blink');
      const { stdout, stderr } = await cli.ok(
        'build',
        join(FIXTURES, 'blink', 'blink.ino'),
        '--board',
        'uno',
        '--out',
        outDir,
      );
      expect(stdout).toMatch(new RegExp(`^Built blink for uno in [\\d.]+ s, into ${outDir}\\n`));
      expect(stdout).toMatch(
        /^ {2}size: flash \d+ of 32256 bytes \([\d.]+%\), RAM \d+ of 2048 bytes \([\d.]+%\)$/m,
      );
      const hex = readFileSync(join(outDir, 'blink.hex'), 'utf8');
      expect(hex).toMatch(/^:[0-9A-F]+\r?\n/);
      expect(hex.trimEnd().split('\n').at(-1)?.trim()).toBe(':00000001FF');
      expect(lines(stderr)[0]).toBe('  compiling blink…');
      expect(lines(stderr)).toContain('  linking…');
    },
    SLOW,
  );

  it(
    'fails a sketch that does not compile with the compiler message at its .ino line, leaving no image',
    async () => {
      const outDir = join(workDir, 'broken');
      const refused = await cli.failing(
        ...['build', join(FIXTURES, 'does-not-compile', 'does-not-compile.ino'), '--board', 'uno'],
        ...['--out', outDir],
      );
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(refused.stderr).toMatch(/^boardfleet: avr-g\+\+ failed:$/m);
      expect(refused.stderr).toMatch(
        /^does-not-compile\.ino:4:\d+: error: 'undefinedFunction' was not declared in this scope$/m,
      );
      expect(readdirSync(outDir).filter((file) => /\.(hex|elf)$/.test(file))).toEqual([]);
    },
    SLOW,
  );

  it(
    'refuses a sketch too big for the board in one line, writing no .hex',
    async () => {
      const outDir = join(workDir, 'too-big');
      const refused = await cli.failing(
        'build',
        join(FIXTURES, 'too-big'),
        '--board',
        'uno',
        '--out',
        outDir,
      );
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(lines(refused.stderr).filter((line) => line.startsWith('boardfleet: '))).toEqual([
        expect.stringMatching(
          /^boardfleet: too-big needs \d+ bytes of flash but board uno has room for 32256 \(\d+ bytes too many\)\. Nothing was flashed\.$/,
        ),
      ]);
      expect(existsSync(join(outDir, 'too-big.hex'))).toBe(false);
    },
    SLOW,
  );

  it.each([
    {
      what: 'an unknown recipe',
      args: ['no-such-firmware', '--board', 'uno'],
      line: `No mcu-firmware recipe at ${RECIPES_DIRECTORY}/no-such-firmware.yaml (ENOENT). Recipes are YAML files in firmware-recipes/`,
    },
    { what: 'a missing sketch', args: ['missing.ino', '--board', 'uno'], line: 'No sketch at missing.ino' },
    {
      what: 'an unknown board',
      args: ['firmata', '--board', 'zx81'],
      line: 'Unknown board "zx81". Known boards: leonardo, mega2560, nano, ',
    },
    {
      what: 'an Arduino sketch for the Pico',
      args: [join(FIXTURES, 'blink', 'blink.ino'), '--board', 'pico'],
      line: 'Arduino sketches build for AVR boards only; board pico (Raspberry Pi Pico) builds firmware recipes, e.g. boardfleet build firmata --board pico',
    },
    {
      what: "a board whose MCU the recipe doesn't support",
      args: [join(FIXTURES, 'uno-only-recipe'), '--board', 'mega2560'],
      line: 'Recipe uno-only supports atmega328p, but board mega2560 has an atmega2560',
    },
  ])('refuses $what in one line, exit code 1, compiling nothing', async ({ args, line }) => {
    const outDir = join(workDir, 'refused');
    const refused = await cli.failing('build', ...args, '--out', outDir);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(lines(refused.stderr)).toEqual([expect.stringContaining(`boardfleet: ${line}`)]);
    expect(existsSync(outDir)).toBe(false);
  });
});

describe('build of a recipe the server does not build for the board', { timeout: SLOW }, () => {
  let server: TestServer;
  let cli: CliRunner;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it.each([
    {
      what: 'a firmware recipe for a Linux board',
      args: ['firmata', '--board', 'rpi-4b'],
      line: `${RECIPES_DIRECTORY}/firmata/recipe.yaml is an mcu-firmware recipe: build it for a microcontroller board, e.g. --board uno`,
    },
    {
      what: 'an unknown recipe for a virtual machine',
      args: ['no-such-image', '--board', 'vm-x86_64'],
      line: `no recipe "no-such-image" in ${RECIPES_DIRECTORY}; recipes: `,
    },
  ])('refuses $what in one line, queueing no build', async ({ args, line }) => {
    const refused = await cli.failing('build', ...args);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(lines(refused.stderr)).toEqual([
      expect.stringContaining(`boardfleet: POST /api/v1/builds failed (400): ${line}`),
    ]);
    expect((await server.api<BuildList>('GET', '/api/v1/builds')).body.builds).toEqual([]);
  });
});
