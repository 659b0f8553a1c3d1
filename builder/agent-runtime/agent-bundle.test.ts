import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunkFile } from '../../lib/content-chunks.ts';
import type { Device } from '../../protocol/api/devices.ts';
import { stopProcess } from '../../test/support/agent-process.ts';
import { sqliteBackend } from '../../test/support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../../test/support/test-server.ts';
import { type AgentBundle, bundleAgent, fastcdcInBundle, REQUIRE_BANNER } from './agent-bundle.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PACKAGE_VERSION = (
  JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

/** Only what a board's image has: node and the bundle; no NODE_OPTIONS or loaders of this test run. */
const bareEnvironment = { PATH: process.env.PATH ?? '/usr/bin:/bin', LOG_LEVEL: 'info' };

describe('the agent bundle', () => {
  let directory: string;
  let bundle: AgentBundle;
  let text: string;

  beforeAll(async () => {
    directory = mkdtempSync(join(tmpdir(), 'boardfleet-agent-bundle-'));
    bundle = await bundleAgent({ outFile: join(directory, 'first', 'agent.mjs') });
    text = readFileSync(bundle.file, 'utf8');
  });
  afterAll(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  it('is one file whose sha256 and size it reports', () => {
    const contents = readFileSync(bundle.file);
    expect(bundle.size).toBe(contents.length);
    expect(bundle.sha256).toBe(createHash('sha256').update(contents).digest('hex'));
    expect(bundle.packages).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'mqtt' }),
        expect.objectContaining({ name: 'zod' }),
        expect.objectContaining({ name: 'pino' }),
      ]),
    );
  });

  it('builds to the same bytes twice', async () => {
    const second = await bundleAgent({ outFile: join(directory, 'second', 'agent.mjs') });
    expect(second.sha256).toBe(bundle.sha256);
    expect(readFileSync(second.file).equals(readFileSync(bundle.file))).toBe(true);
  });

  it('holds no path of this machine', () => {
    expect(text).not.toContain(REPO_ROOT);
    expect(text).not.toContain('/work/');
    expect(text).not.toContain(`${homedir()}/`);
    expect(text).not.toContain(directory);
    expect(text).not.toContain('sourceMappingURL');
  });

  it('leaves the native addons of serialport and better-sqlite3 out', () => {
    const names = bundle.packages.map((found) => found.name);
    for (const native of ['@serialport/bindings-cpp', 'better-sqlite3', 'node-gyp-build', 'bindings']) {
      expect(names).not.toContain(native);
    }
    expect(text).not.toContain('node-gyp-build');
    expect(text).not.toContain('better-sqlite3');
    expect(text).not.toContain('process.dlopen');
  });

  it('reuses the cached bundle while no input changed, and rebuilds when one did', async () => {
    const cacheDir = join(directory, 'cache');
    const cold = await bundleAgent({ outFile: join(directory, 'cold', 'agent.mjs'), cacheDir });
    const recordFile = join(cacheDir, 'agent-bundle', 'last-bundle.json');
    const record = JSON.parse(readFileSync(recordFile, 'utf8')) as { inputs: Record<string, string> };
    expect(Object.keys(record.inputs)).toEqual(
      expect.arrayContaining(['device-agent/image-entry.ts', 'device-agent/main.ts']),
    );
    const recordedAt = statSync(recordFile).mtimeMs;

    const warm = await bundleAgent({ outFile: join(directory, 'warm', 'agent.mjs'), cacheDir });
    expect(warm).toEqual({ ...cold, file: join(directory, 'warm', 'agent.mjs') });
    expect(readFileSync(warm.file).equals(readFileSync(cold.file))).toBe(true);
    expect(statSync(recordFile).mtimeMs).toBe(recordedAt);

    // As if main.ts had been edited since: the record no longer matches, so esbuild runs again.
    record.inputs['device-agent/main.ts'] = '0'.repeat(64);
    writeFileSync(recordFile, JSON.stringify(record));
    const rebuilt = await bundleAgent({ outFile: join(directory, 'rebuilt', 'agent.mjs'), cacheDir });
    expect(rebuilt.sha256).toBe(cold.sha256);
    const rewritten = JSON.parse(readFileSync(recordFile, 'utf8')) as { inputs: Record<string, string> };
    expect(rewritten.inputs['device-agent/main.ts']).toBe(
      createHash('sha256')
        .update(readFileSync(join(REPO_ROOT, 'device-agent/main.ts')))
        .digest('hex'),
    );
  });

  it("carries FastCDC's WebAssembly inside, and code bundled so cuts a file as the library does here", async () => {
    const wasm = join(REPO_ROOT, 'node_modules/@dstanesc/wasm-chunking-fastcdc-node/chunking_bg.wasm');
    expect(text).toContain(readFileSync(wasm).toString('base64'));
    expect(text).not.toContain('chunking_bg.wasm');
    expect(bundle.packages.map((found) => found.name)).toContain('@dstanesc/wasm-chunking-fastcdc-node');

    // The agent's chunker alone, bundled the same way, run where no node_modules can be found.
    const cwd = mkdtempSync(join(directory, 'chunker-'));
    await build({
      stdin: {
        contents: [
          "import { chunkFile } from './lib/content-chunks.ts';",
          'const cuts = [];',
          'for await (const chunk of chunkFile(process.argv[2])) cuts.push([chunk.offset, chunk.sha256.toString("hex")]);',
          'console.log(JSON.stringify(cuts));',
        ].join('\n'),
        resolveDir: REPO_ROOT,
        loader: 'ts',
      },
      outfile: join(cwd, 'chunker.mjs'),
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      banner: { js: REQUIRE_BANNER },
      plugins: [fastcdcInBundle],
      logLevel: 'silent',
    });
    const sample = join(cwd, 'sample.bin');
    writeFileSync(sample, randomBytes(400 * 1024));
    const result = spawnSync(process.execPath, ['chunker.mjs', sample], {
      cwd,
      env: bareEnvironment,
      encoding: 'utf8',
    });
    expect(result.stderr).toBe('');
    const here: Array<[number, string]> = [];
    for await (const chunk of chunkFile(sample)) here.push([chunk.offset, chunk.sha256.toString('hex')]);
    expect(here.length).toBeGreaterThan(5);
    expect(JSON.parse(result.stdout)).toEqual(here);
  });

  it('runs with nothing but node from an empty directory', () => {
    const cwd = mkdtempSync(join(directory, 'empty-'));
    const result = spawnSync(process.execPath, [bundle.file, '--help'], {
      cwd,
      env: bareEnvironment,
      encoding: 'utf8',
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('Usage: node agent.mjs [--config FILE] [--data-dir DIR]');
  });

  it('lists every bad key of its config file and exits 1', () => {
    const cwd = mkdtempSync(join(directory, 'empty-'));
    writeFileSync(join(cwd, 'agent.json'), JSON.stringify({ server: 'not a url', heartbeat: 0 }));
    const result = spawnSync(process.execPath, [bundle.file, '--config', 'agent.json'], {
      cwd,
      env: bareEnvironment,
      encoding: 'utf8',
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('invalid agent configuration');
    expect(result.stderr).toMatch(/server: .*\n.*heartbeat: /);
  });

  describe('against a real server', () => {
    let server: TestServer;

    beforeAll(async () => {
      server = await startTestServer(sqliteBackend);
    });
    afterAll(async () => {
      await server?.dispose();
    });

    it('provisions itself from its config file, goes online, and says goodbye on SIGTERM', async () => {
      const { token } = (
        await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'bundle' })
      ).body;
      const cwd = mkdtempSync(join(directory, 'device-'));
      // What an image's boot partition carries; --data-dir (from the image's init) wins over dataDir.
      writeFileSync(
        join(cwd, 'boardfleet.json'),
        JSON.stringify({
          server: server.httpUrl,
          provisioningToken: token,
          name: 'bundled',
          heartbeat: 1,
          dataDir: 'not-this',
        }),
      );
      const agent = spawn(
        process.execPath,
        [bundle.file, '--config', 'boardfleet.json', '--data-dir', 'state'],
        {
          cwd,
          env: bareEnvironment,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let output = '';
      agent.stdout.on('data', (data: Buffer) => (output += data.toString()));
      agent.stderr.on('data', (data: Buffer) => (output += data.toString()));
      const device = async () => {
        const { body } = await server.api<{ devices: Device[] }>('GET', '/api/v1/devices?limit=1000');
        return body.devices.find((candidate) => candidate.name === 'bundled');
      };
      try {
        const online = await eventually(
          'the bundled agent online with its inventory',
          // The inventory is a message of its own, stored a moment after the device is online.
          async () => {
            const found = await device();
            return found?.online && found.inventory ? found : undefined;
          },
          20_000,
        ).catch((error: Error) => {
          throw new Error(`${error.message}\nagent output:\n${output}`);
        });
        expect(online?.inventory).toMatchObject({
          agentVersion: PACKAGE_VERSION,
          architecture: process.arch,
        });
        expect(existsSync(join(cwd, 'state', 'credentials.json'))).toBe(true);
        expect(existsSync(join(cwd, 'not-this'))).toBe(false);

        const exited = once(agent, 'exit');
        agent.kill('SIGTERM');
        const [code] = (await exited) as [number | null];
        expect(code).toBe(0);
        await eventually('the bundled agent offline', async () => (await device())?.online === false);
      } finally {
        await stopProcess(agent, 'SIGKILL');
      }
    });
  });
});
