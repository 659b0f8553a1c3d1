import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleNodeEntry } from './node-entry-bundle.ts';

const run = promisify(execFile);

describe('Node application bundles', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'boardfleet-node-entry-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  /** An app with a local module and an npm dependency (semver, from this checkout's node_modules). */
  function writeApp(dir: string): string {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'greeting.mjs'), 'export const greeting = (name) => `hello ${name}`;\n');
    writeFileSync(
      join(dir, 'main.mjs'),
      "import semver from 'semver';\nimport { greeting } from './greeting.mjs';\n" +
        "console.log(greeting('vm'), semver.valid('1.2.3'), process.env.APP_PORT ?? '-');\n",
    );
    return join(dir, 'main.mjs');
  }

  it('makes one self-contained module, the same bytes from two checkouts, that runs with nothing but node', async () => {
    // Inside the repository, so that semver resolves from its node_modules.
    const base = mkdtempSync(join(process.cwd(), '.node-entry-test-'));
    try {
      const first = await bundleNodeEntry({
        entry: writeApp(join(base, 'a')),
        outFile: join(scratch, 'a.mjs'),
      });
      const second = await bundleNodeEntry({
        entry: writeApp(join(base, 'b')),
        outFile: join(scratch, 'b.mjs'),
      });
      expect(second.sha256).toBe(first.sha256);
      expect(first.packages).toEqual([{ name: 'semver', version: 'NOASSERTION' }]);
      const { stdout } = await run(process.execPath, [join(scratch, 'a.mjs')], {
        cwd: scratch,
        env: { PATH: process.env.PATH, APP_PORT: '8080' },
      });
      expect(stdout).toBe('hello vm 1.2.3 8080\n');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it('says which import it could not resolve', async () => {
    const dir = join(scratch, 'broken');
    mkdirSync(dir);
    writeFileSync(join(dir, 'main.mjs'), "import 'no-such-package-anywhere';\n");
    await expect(
      bundleNodeEntry({ entry: join(dir, 'main.mjs'), outFile: join(scratch, 'x.mjs') }),
    ).rejects.toThrow(/bundling .*main\.mjs failed: Could not resolve "no-such-package-anywhere"/);
  });
});
