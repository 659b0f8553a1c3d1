import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { cliRunner } from '../support/cli-runner.ts';
import { readmeSection, shellBlocks } from '../support/readme-commands.ts';

/**
 * README "Arduino boards: build, flash, simulate", the block for work without hardware, run as
 * written: a simulated Uno on the bench, our Firmata flashed onto it over its bootloader, probed,
 * stopped. HOME is a fresh folder, so `~/.cache/boardfleet/bench/uno/tty` is this test's board.
 */
describe('README "without hardware": bench start, flash, probe and bench stop as written', () => {
  const home = mkdtempSync(join(tmpdir(), 'boardfleet-readme-bench-'));
  const cli = cliRunner({
    cwd: home,
    env: { HOME: home, BOARDFLEET_CACHE_DIR: '', XDG_CACHE_HOME: '' },
    timeoutMs: 240_000,
  });
  const steps = shellBlocks(readmeSection('Arduino boards: build, flash, simulate'))[1] ?? [];

  afterAll(async () => {
    // A failed step must not leave simavr running.
    await cli.failing('bench', 'stop', 'uno').catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  });

  it('simulates, flashes, probes and stops an Uno with the README lines', async () => {
    expect(
      steps.map((step) => (step.kind === 'boardfleet' ? step.args.slice(0, 2).join(' ') : step.kind)),
    ).toEqual(['bench start', 'flash firmata', 'probe --port', 'bench stop']);
    const printed: string[] = [];
    for (const step of steps) {
      if (step.kind !== 'boardfleet') throw new Error(`not a boardfleet line: ${step.line}`);
      // As the shell expands it.
      const args = step.args.map((arg) => arg.replace(/^~\//, `${home}/`));
      printed.push((await cli.ok(...args)).stdout);
    }
    const [started, flashed, probed, stopped] = printed;
    // "prints its port, e.g. ~/.cache/boardfleet/bench/uno/tty": the port the next lines use.
    expect(started).toContain(join(home, '.cache/boardfleet/bench/uno/tty'));
    expect(flashed).toMatch(/verified/);
    expect(probed).toMatch(/firmware: +BoardfleetFirmata .*\(protocol 2\.6\)/);
    expect(probed).toMatch(/^ {2}pins: +20 /m);
    expect(probed).toMatch(/^ {2}self-test: passed/m);
    expect(stopped).toMatch(/^Stopped uno/m);
  }, 600_000);

  it('builds a sketch for a Nano as the hardware block shows, path/to/sketch being a real one', async () => {
    const line = shellBlocks(readmeSection('Arduino boards: build, flash, simulate'))[0]?.find(
      (step) => step.kind === 'boardfleet' && step.args[0] === 'build',
    );
    expect(line?.kind === 'boardfleet' && line.args).toEqual(['build', 'path/to/sketch', '--board', 'nano']);
    const sketch = fileURLToPath(new URL('../../builder/mcu/fixtures/blink', import.meta.url));
    const { stdout } = await cli.ok('build', sketch, '--board', 'nano');
    const hex = /(\S+\.hex)/.exec(stdout)?.[1];
    expect(hex, stdout).toBeDefined();
    expect(readFileSync(resolve(home, hex!), 'utf8')).toMatch(/^:[0-9A-F]+\r?\n/);
    expect(stdout).toMatch(/flash/i);
  }, 300_000);
});
