// `npm run bench -- tuf [--artifacts 200] [--checks 20]`
// What TUF verification costs an agent per update: a Boardfleet server with a root made by
// `boardfleet keys init` and N artifacts in targets.json; an agent's FleetMetadata checks one
// deployment first with no metadata (root chain, timestamp, snapshot, targets fetched) and then
// again with its metadata up to date (timestamp only). Baseline, in the same run: the check every
// update had before, the manifest signature against the fleet key.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import pino from 'pino';
import { sha256 } from '../lib/hash.ts';
import { deploymentFromArtifact } from '../server/rollouts/desired-deployment.ts';
import { verifySignedManifest } from '../device-agent/update/artifact-verify.ts';
import { FleetMetadata, type MetadataCost } from '../device-agent/update/fleet-metadata.ts';
import { CLI } from '../test/support/agent-process.ts';
import { uploadArtifact } from '../test/support/artifacts.ts';
import { startBenchServer } from './bench-server.ts';
import { percentile } from './stats.ts';

const execFileAsync = promisify(execFile);

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { artifacts: { type: 'string', default: '200' }, checks: { type: 'string', default: '20' } },
  });
  const artifactCount = Number(values.artifacts);
  const checks = Number(values.checks);
  process.stdout.write(
    `tuf benchmark: ${artifactCount} artifacts in targets.json, ${checks} checks each way\n\n`,
  );
  const server = await startBenchServer();
  const scratch = mkdtempSync(join(tmpdir(), 'boardfleet-tuf-bench-'));
  try {
    await execFileAsync(
      process.execPath,
      [CLI, 'keys', 'init', '--holders', '2', '--threshold', '2', '--out', join(scratch, 'root')],
      {
        env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
      },
    );
    let last = null as Awaited<ReturnType<typeof uploadArtifact>> | null;
    for (let index = 0; index < artifactCount; index++) {
      const content = Buffer.from(`artifact ${index}`);
      last = await uploadArtifact(server, content, {
        name: `app-${index % 10}`,
        version: `1.0.${index}`,
        boards: ['generic-x64'],
      });
      if (sha256(content) !== last.sha256) throw new Error('upload mismatch');
    }
    const deployment = deploymentFromArtifact(last!, 'dep-bench');
    const fresh = () =>
      new FleetMetadata({
        dataDir: mkdtempSync(join(scratch, 'device-')),
        serverUrl: server.httpUrl,
        fetch,
        deviceId: 'dev-bench',
        logger: pino({ level: 'silent' }),
      });
    const cold: MetadataCost[] = [];
    const warm: MetadataCost[] = [];
    for (let index = 0; index < checks; index++) {
      const metadata = fresh();
      await metadata.hasTrustedRoot();
      cold.push(await metadata.check(deployment, null, null));
      warm.push(await metadata.check(deployment, null, null));
    }
    const fleetKey = (await (await fetch(`${server.httpUrl}/api/v1/fleet-key`)).json()) as {
      publicKeyPem: string;
    };
    const manifestMs: number[] = [];
    for (let index = 0; index < checks * 10; index++) {
      const started = performance.now();
      verifySignedManifest(deployment, fleetKey.publicKeyPem);
      manifestMs.push(performance.now() - started);
    }
    const row = (label: string, costs: MetadataCost[]) => [
      label,
      String(
        percentile(
          costs.map((cost) => cost.bytes),
          50,
        ),
      ),
      percentile(
        costs.map((cost) => cost.milliseconds),
        50,
      ).toFixed(1),
      percentile(
        costs.map((cost) => cost.milliseconds),
        99,
      ).toFixed(1),
    ];
    const table = [
      ['check per update', 'bytes p50', 'ms p50', 'ms p99'],
      row('TUF, no metadata yet (first update)', cold),
      row('TUF, metadata up to date', warm),
      [
        'manifest signature (baseline)',
        '0',
        percentile(manifestMs, 50).toFixed(3),
        percentile(manifestMs, 99).toFixed(3),
      ],
    ];
    const widths = table[0]!.map((_, column) => Math.max(...table.map((cells) => cells[column]!.length)));
    for (const cells of table)
      process.stdout.write(`${cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}\n`);
    process.stdout.write(
      '\nTUF: tuf-js refresh (root chain, timestamp, snapshot and targets when their versions moved) and\n' +
        'the target lookup, over HTTP on loopback to the server in this process; bytes are what it read.\n' +
        'baseline: the ed25519 manifest check every update ran before (it still runs).\n',
    );
  } finally {
    await server.dispose();
    rmSync(scratch, { recursive: true, force: true });
  }
}
