import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../', import.meta.url));

describe('agent start-up without serialport', () => {
  it('loads the agent without importing serialport when no board is attached', async () => {
    // A loader hook that fails any import of serialport, as a bundled agent without it would.
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-no-serialport-'));
    const hook = join(dir, 'hook.mjs');
    writeFileSync(
      hook,
      'export async function resolve(specifier, context, next) {\n  if (/serialport/.test(specifier)) throw new Error(`serialport imported by ${context.parentURL}`);\n  return next(specifier, context);\n}\n',
    );
    const register = join(dir, 'register.mjs');
    writeFileSync(
      register,
      `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`,
    );
    const { stdout } = await run(
      process.execPath,
      [
        '--import',
        register,
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        "const agent = await import('./device-agent/main.ts'); console.log(typeof agent.runAgent);",
      ],
      { cwd: REPO },
    );
    expect(stdout.trim()).toBe('function');
  });
});
