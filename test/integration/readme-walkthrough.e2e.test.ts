import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Device, DevicePage } from '../../protocol/api/devices.ts';
import { type CliRunner, cliRunner } from '../support/cli-runner.ts';
import { freePort } from '../support/databases.ts';
import {
  type BackgroundCommand,
  expectPrinted,
  Placeholders,
  type ReadmeStep,
  readmeSection,
  shellBlocks,
  startBackground,
} from '../support/readme-commands.ts';
import { eventually, TLS_ON_FREE_PORTS } from '../support/test-server.ts';

/**
 * Issue 15 item 11: "Five minutes with Boardfleet" as a user follows it. The shell blocks are read
 * from README.md at test time and run line by line (`npx boardfleet …` as the real CLI), with the
 * README's placeholders replaced by what earlier commands printed; then a release goes out with
 * the commands the CLI table and "Staged rollouts" name.
 */

const execFileAsync = promisify(execFile);
const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** Real agents, fifty simulated ones and a rollout on a loaded two-core machine: patient. */
const SLOW = 90_000;

/** A CLI table (columns two spaces apart, no cell empty) as rows keyed by its upper-case header. */
function tableRows(printed: string): Array<Record<string, string>> {
  const [header, ...rows] = printed
    .trimEnd()
    .split('\n')
    .map((line) => line.split(/\s{2,}/));
  return rows.map((cells) =>
    Object.fromEntries(header!.map((column, index) => [column, cells[index] ?? ''])),
  );
}

describe('README "Five minutes with Boardfleet", word for word, then a staged rollout', () => {
  const blocks = shellBlocks(readmeSection('Five minutes with Boardfleet'));
  const workDir = mkdtempSync(join(tmpdir(), 'boardfleet-readme-'));
  const placeholders = new Placeholders();
  const background: BackgroundCommand[] = [];
  let server: ChildProcess & { output(): string };
  let httpPort: number;
  let mqttPort: number;
  let httpsPort: number;
  let mqttsPort: number;
  let serverUrl: string;
  let env: NodeJS.ProcessEnv;
  let cli: CliRunner;

  /** Devices through the REST API, cheap enough to poll (the CLI's own output is checked after). */
  const devices = async (query = 'limit=500') => {
    const token = readFileSync(join(workDir, 'data', 'admin.token'), 'utf8').trim();
    const response = await fetch(`${serverUrl}/api/v1/devices?${query}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return ((await response.json()) as DevicePage).devices;
  };
  const device = async (name: string) => (await devices()).find((d) => d.name === name);
  const listedJson = async (...filters: string[]) =>
    JSON.parse((await cli.ok('devices', 'list', ...filters, '--json')).stdout) as Device[];

  /** Runs one README line: the server, a secret file, or `npx boardfleet …` (long-running ones in the background). */
  async function run(step: ReadmeStep): Promise<string> {
    if (step.kind === 'npm') {
      // The checkout is installed already: `npm ci` is the step before this test.
      expect(step.scripts).toContain('start');
      startServer();
      return '';
    }
    if (step.kind === 'secret-file') {
      // `(umask 077; echo '…' > FILE)`: the file is created readable by its owner only.
      writeFileSync(join(workDir, step.file), `${placeholders.fill(step.content)}\n`, { mode: 0o600 });
      return '';
    }
    if (step.kind === 'write-file') {
      writeFileSync(join(workDir, step.file), `${step.content}\n`);
      return '';
    }
    if (step.kind === 'tar') {
      await execFileAsync('tar', step.args, { cwd: workDir });
      return '';
    }
    // The server runs on free ports, not the README's 8080 and 8443: the same URL in --server and BOARDFLEET_URL.
    const args = step.args.map((arg) =>
      placeholders
        .fill(arg)
        .replace('http://localhost:8080', serverUrl)
        .replace('https://localhost:8443', `https://localhost:${httpsPort}`),
    );
    if (args[0] === 'agent' || args[0] === 'simulate') {
      background.push(startBackground(args, workDir, env));
      return '';
    }
    // `--watch` lasts as long as the rollout does.
    const runner = args.includes('--watch')
      ? cliRunner({ url: serverUrl, cwd: workDir, timeoutMs: SLOW * 2 })
      : cli;
    const { stdout } = await runner.ok(...args);
    expectPrinted(step.output, stdout);
    placeholders.learn(stdout);
    return stdout;
  }

  /** `npm start`: package.json's start script, in the user's folder, on free ports. */
  function startServer() {
    const scripts = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
      scripts: { start: string };
    };
    const [program, ...args] = scripts.scripts.start.split(' ');
    expect(program).toBe('node');
    const child = spawn(
      process.execPath,
      args.map((arg) => (arg.includes('/') ? resolve(REPO, arg) : arg)),
      {
        cwd: workDir,
        // A system Mosquitto holds 1883 here: the README's advice, BOARDFLEET_MQTT_PORT (and the HTTP port alike).
        env: {
          ...env,
          ...TLS_ON_FREE_PORTS,
          BOARDFLEET_HTTP_PORT: String(httpPort),
          BOARDFLEET_MQTT_PORT: String(mqttPort),
          BOARDFLEET_HTTPS_PORT: String(httpsPort),
          BOARDFLEET_MQTTS_PORT: String(mqttsPort),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (data: Buffer) => (output += data.toString()));
    child.stderr.on('data', (data: Buffer) => (output += data.toString()));
    child.on('error', (error) => (output += `\nspawn failed: ${error.message}\n`));
    server = Object.assign(child, { output: () => output });
  }

  const stop = async (child: ChildProcess, signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    // A process that does not stop cleanly in time is killed: cleanup must not hang the suite.
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(killer);
  };

  beforeAll(async () => {
    // A fresh shell: no token, data dir or server settings from the environment the suite runs in.
    env = Object.fromEntries(
      Object.entries(process.env).filter(
        ([key]) => !key.startsWith('BOARDFLEET_') && key !== 'DATABASE_URL' && key !== 'MQTT_URL',
      ),
    );
    for (const key of Object.keys(process.env)) if (!(key in env)) delete process.env[key];
    httpPort = await freePort();
    mqttPort = await freePort();
    httpsPort = await freePort();
    mqttsPort = await freePort();
    serverUrl = `http://localhost:${httpPort}`;
    // No BOARDFLEET_TOKEN: the CLI must find ./data/admin.token in its folder by itself.
    env.BOARDFLEET_URL = serverUrl;
    cli = cliRunner({ url: serverUrl, cwd: workDir });
  });

  afterAll(async () => {
    await Promise.all(background.map((command) => stop(command.child, 'SIGINT')));
    if (server) await stop(server, 'SIGINT');
    rmSync(workDir, { recursive: true, force: true });
  });

  it(
    'npm start prints the server and MQTT URLs and the operator token path, a file only its owner reads',
    async () => {
      const [start] = blocks[0] ?? [];
      expect(start?.line).toBe('npm ci && npm start');
      expect(start?.output).toHaveLength(3);
      await run(start!);
      const printed = await eventually(
        'the server to print where it listens and where its token is',
        () => {
          if (server.exitCode !== null)
            throw new Error(`server exited ${server.exitCode}: ${server.output()}`);
          return /^Operator token: /m.test(server.output()) && server.output();
        },
        SLOW,
      );
      // The README shows the default ports.
      expectPrinted(start!.output, printed, [
        ['localhost:8080', `localhost:${httpPort}`],
        ['localhost:1883', `localhost:${mqttPort}`],
        ['localhost:8443', `localhost:${httpsPort}`],
        ['localhost:8883', `localhost:${mqttsPort}`],
      ]);
      expect(statSync(join(workDir, 'data', 'admin.token')).mode & 0o777).toBe(0o600);
    },
    SLOW,
  );

  it(
    'devices add prints the id and the secret once, and the agent started with the secret file brings kitchen-pi online',
    async () => {
      const [add, secretFile, agent] = blocks[1] ?? [];
      expect(add?.line).toBe('npx boardfleet devices add kitchen-pi --tag lab');
      expect(add?.output).toHaveLength(2);
      const printed = await run(add!);
      expect(printed).toContain(`Created device ${placeholders.value('dev-')} (kitchen-pi)`);
      expect(printed).toContain(`secret: ${placeholders.value('bfd_')}`);
      await run(secretFile!);
      expect(statSync(join(workDir, 'kitchen-pi.secret')).mode & 0o777).toBe(0o600);
      expect(agent?.kind === 'boardfleet' && agent.args[0]).toBe('agent');
      await run(agent!);
      const online = await eventually(
        'kitchen-pi online with its inventory',
        async () => {
          const kitchen = await device('kitchen-pi');
          return kitchen?.online && kitchen.inventory !== null && kitchen;
        },
        SLOW,
      );
      expect(online.id).toBe(placeholders.value('dev-'));
      expect(online.tags).toEqual(['lab']);
    },
    SLOW,
  );

  it(
    'an agent with a provisioning token file registers hall-pi and keeps its credentials in a file only it reads',
    async () => {
      expect(blocks[2]?.map((step) => step.kind)).toEqual(['boardfleet', 'secret-file', 'boardfleet']);
      for (const step of blocks[2]!) await run(step);
      expect(placeholders.value('bfp_')).toMatch(/^bfp_/);
      await eventually('hall-pi online', async () => (await device('hall-pi'))?.online, SLOW);
      // The note under the agent: "… credentials in ./hall-pi-data/credentials.json (0600) …".
      const note = blocks[2]!.at(-1)!.notes.join(' ');
      const [, path, mode] = /(\.\/\S+) \((0\d{3})\)/.exec(note) ?? [];
      expect(path).toBe('./hall-pi-data/credentials.json');
      expect(statSync(join(workDir, path!)).mode & 0o777).toBe(Number.parseInt(mode!, 8));
    },
    SLOW,
  );

  it(
    'devices list shows both agents online in the README columns, devices show has inventory, version and heartbeat, and simulate --devices 50 brings fifty online',
    async () => {
      const [list, show, simulate] = blocks[3] ?? [];
      // "ID, NAME, STATUS (online), BOARD, …": the columns, and what the status of a running agent reads.
      const note = list!.notes[0]!;
      const columns = note.replace(/ \([^)]*\)/g, '').split(', ');
      const online = /STATUS \((\w+)\)/.exec(note)?.[1];
      const printed = await run(list!);
      expect(printed.split('\n')[0]?.split(/\s{2,}/)).toEqual(columns);
      const rows = tableRows(printed);
      for (const name of ['kitchen-pi', 'hall-pi'])
        expect(rows.find((row) => row.NAME === name)?.STATUS).toBe(online);

      expect(show?.kind === 'boardfleet' && show.args.slice(0, 2)).toEqual(['devices', 'show']);
      const details = await run(show!);
      expect(details).toMatch(new RegExp(`^${placeholders.value('dev-')} {2}kitchen-pi {2}online`));
      expect(details).toMatch(/^ {2}system: {4}\S.*, kernel \S+, \S+$/m);
      expect(details).toMatch(/^ {2}agent: {5}\d+\.\d+\.\d+/m);
      expect(details).toMatch(/^ {2}version: {3}\S/m);
      expect(details).toMatch(
        /^ {2}health \([^)]*\): uptime .*, load .*, memory .* free of .*, disk .* free of /m,
      );
      expect(details).toContain('  deployments: none yet\n');

      expect(simulate?.kind === 'boardfleet' && simulate.args).toEqual(['simulate', '--devices', '50']);
      await run(simulate!);
      const simulated = await eventually(
        'fifty simulated devices online',
        async () => {
          const online = (await devices('tag=simulated&online=true&limit=500')).length;
          return online === 50 && online;
        },
        SLOW,
      );
      expect(simulated).toBe(50);
      expect((await listedJson('--online')).length).toBe(52);
    },
    SLOW * 2,
  );

  it(
    'the app bundle the README makes is pushed, released and rolled out to kitchen-pi and the simulated fleet; status --watch exits 0',
    async () => {
      // The README's --board generic-x64 is what an agent on a PC reports, as this machine is.
      expect((await device('kitchen-pi'))!.inventory!.board).toBe('generic-x64');
      const steps = blocks[4] ?? [];
      expect(steps.map((step) => step.kind)).toEqual([
        'boardfleet',
        'write-file',
        'tar',
        'boardfleet',
        'boardfleet',
        'boardfleet',
        'boardfleet',
        'boardfleet',
      ]);
      const printed: string[] = [];
      for (const step of steps) printed.push(await run(step));
      const [ceremony, , , pushed, created, started, watched, labDevices] = printed;
      expect(ceremony).toMatch(/^Published root version 1: 2 of 2 root keys must sign the next root/m);
      const artifactId = /^Stored hello 1\.0\.0 as (\S+) \(.*\), manifest signed$/m.exec(pushed!)?.[1];
      expect(artifactId).toBe(placeholders.value('art-'));
      expect(created).toMatch(/^Created release hello-1\.0\.0 \(\S+\)$/m);
      expect(started).toContain(placeholders.value('ro-'));
      expect(watched).toMatch(/: completed \(took /);

      const listed = tableRows((await cli.ok('artifact', 'list')).stdout).find(
        (row) => row.ID === artifactId,
      );
      expect(listed).toMatchObject({ NAME: 'hello', VERSION: '1.0.0', KIND: 'app-bundle' });
      const release = tableRows((await cli.ok('release', 'list')).stdout).find(
        (row) => row.NAME === 'hello-1.0.0',
      );
      expect(release?.ARTIFACTS).toBe('*=hello 1.0.0');
      const rollouts = tableRows((await cli.ok('rollout', 'list')).stdout);
      expect(rollouts.find((row) => row.ID === placeholders.value('ro-'))?.STATE).toBe('completed');

      const lab = tableRows(labDevices!);
      expect(lab.map((row) => [row.NAME, row.VERSION])).toEqual([['kitchen-pi', '1.0.0']]);
      // kitchen-pi checked the release against the fleet's TUF metadata before installing it.
      const kitchen = background.find((command) => command.args.includes('kitchen-pi.secret'));
      expect(kitchen?.output()).toMatch(/hello 1\.0\.0 is signed by the fleet's targets metadata/);
      const table = tableRows((await cli.ok('devices', 'list')).stdout);
      expect(table.find((row) => row.NAME === 'hall-pi')?.VERSION).toBe('-');
      const simulated = await listedJson('--tag', 'simulated');
      expect(simulated).toHaveLength(50);
      expect(new Set(simulated.map((d) => d.runningVersion))).toEqual(new Set(['1.0.0']));
    },
    SLOW * 3,
  );

  it(
    'Ctrl-C on the agent takes kitchen-pi offline at once, well within its keepalive',
    async () => {
      const kitchen = background.find((command) => command.args.includes('--secret-file'))!;
      const sent = Date.now();
      const exited = once(kitchen.child, 'exit');
      kitchen.child.kill('SIGINT');
      expect((await exited)[0]).toBe(0);
      expect(kitchen.output()).toContain('agent stopped');
      // The keepalive is 30 s, so the broker alone would take up to 45 s: offline sooner is the agent's goodbye.
      await eventually(
        'kitchen-pi offline',
        async () => (await device('kitchen-pi'))?.online === false,
        15_000,
      );
      expect(Date.now() - sent).toBeLessThan(15_000);
      const offline = await listedJson('--offline');
      expect(offline.map((d) => d.name)).toEqual(['kitchen-pi']);
    },
    SLOW,
  );
});
