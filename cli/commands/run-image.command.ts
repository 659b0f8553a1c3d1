import { createWriteStream, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Command } from 'commander';
import type { Artifact, ArtifactList } from '../../protocol/api/artifacts.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { BUNDLE_FILES, type LaunchSpec } from '../../protocol/unikernel-image.ts';
import { fetchFleetKey } from '../../device-agent/lib/credentials.ts';
import { sha256File } from '../../lib/hash.ts';
import { verifyDeployment } from '../../device-agent/update/artifact-verify.ts';
import {
  type AcceleratorPreference,
  detectAccelerator,
  type PortForward,
  QemuVm,
} from '../../device-agent/vm/qemu-vm.ts';
import { checkBundleDir, extractBundle } from '../../device-agent/vm/vm-bundle.ts';
import { ApiClient } from '../api-client.ts';
import { progressBar } from '../progress.ts';

const collect = (value: string, previous: string[]) => [...previous, value];

interface RunImageOptions {
  publish: string[];
  env: string[];
  memory?: string;
  accel: string;
  readyTimeout: string;
}

export function register(program: Command): void {
  program
    .command('run-image <artifact>')
    .description(
      'Boot a unikernel image under qemu and stream its console (Ctrl-C stops it; a second Ctrl-C kills it). ' +
        '<artifact>: a bundle .tar or folder, or an artifact on the server (id, or name[@version])',
    )
    .option(
      '-p, --publish <host:guest>',
      'forward a host port to a guest port (host 0: any free port); repeatable',
      collect,
      [],
    )
    .option(
      '-e, --env <KEY=VALUE>',
      'environment for the application (on the kernel command line); repeatable',
      collect,
      [],
    )
    .option('--memory <MiB>', 'memory instead of the image’s own')
    .option('--accel <auto|kvm|tcg>', 'accelerator (auto: KVM when usable)', 'auto')
    .option('--ready-timeout <seconds>', 'how long to wait for the image’s readiness check', '120')
    .action(async (artifact: string, options: RunImageOptions) => {
      process.exitCode = await runImage(artifact, options);
    });
}

async function runImage(artifact: string, options: RunImageOptions): Promise<number> {
  const accel = options.accel as AcceleratorPreference;
  if (!['auto', 'kvm', 'tcg'].includes(accel)) {
    throw new BoardfleetError('invalid-arguments', `--accel must be auto, kvm or tcg, not ${options.accel}`);
  }
  const env = parseEnv(options.env);
  const memoryMiB = options.memory === undefined ? undefined : parsePositive('--memory', options.memory);
  const readyTimeoutSeconds = parsePositive('--ready-timeout', options.readyTimeout);
  const scratch = mkdtempSync(join(tmpdir(), 'bf-run-image-'));
  try {
    const { dir, spec } = await obtainBundle(artifact, scratch);
    const forwards = portForwards(spec, options.publish);
    if (accel === 'auto') say('checking whether KVM can run this kernel (a probe boot of a few seconds)');
    const accelerator = await detectAccelerator(spec.architecture, {
      kernel: join(dir, BUNDLE_FILES.kernel),
      preference: accel,
    });
    say(`booting ${spec.name} ${spec.version} (${spec.architecture}) under ${accelerator.reason}`);
    const vm = new QemuVm({
      bundleDir: dir,
      accelerator,
      env,
      forwards,
      ...(memoryMiB ? { memoryMiB } : {}),
      onConsoleLine: (line) => process.stdout.write(`${line}\n`),
    });
    let stopping: Promise<unknown> | null = null;
    const onInterrupt = () => {
      if (stopping) {
        say('killing the VM');
        vm.kill();
        return;
      }
      say('stopping the VM (Ctrl-C again to kill it)');
      stopping = vm.stop({ graceMs: 30_000 });
    };
    process.on('SIGINT', onInterrupt);
    process.on('SIGTERM', onInterrupt);
    const startedAt = Date.now();
    try {
      await vm.start();
      for (const forward of forwards) {
        say(
          `guest ${forward.protocol} port ${forward.guest} → 127.0.0.1:${vm.hostPort(forward.guest, forward.protocol)}`,
        );
      }
      if (spec.readiness) {
        vm.waitForReady(spec.readiness, readyTimeoutSeconds * 1000).then(
          () => say(`ready after ${((Date.now() - startedAt) / 1000).toFixed(1)} s`),
          (error: Error) => {
            if (!vm.exit) say(error.message);
          },
        );
      }
      const exit = await vm.exited;
      const clean =
        exit.description === 'the guest powered off' || (stopping !== null && exit.signal === null);
      say(`${spec.name} ${spec.version}: ${exit.description}`);
      return clean ? 0 : 1;
    } finally {
      process.off('SIGINT', onInterrupt);
      process.off('SIGTERM', onInterrupt);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Status lines go to stderr, so stdout is the console alone. */
function say(line: string): void {
  process.stderr.write(`boardfleet: ${line}\n`);
}

function parsePositive(flag: string, value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0) {
    throw new BoardfleetError('invalid-arguments', `${flag} must be a whole number above 0, not ${value}`);
  }
  return number;
}

function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf('=');
    if (equals <= 0) throw new BoardfleetError('invalid-arguments', `--env takes KEY=VALUE, not ${pair}`);
    env[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  return env;
}

/** `-p HOST:GUEST[/udp]` for the ports asked; every other port of the image on a free host port. */
function portForwards(spec: LaunchSpec, publish: string[]): PortForward[] {
  const forwards: PortForward[] = [];
  for (const entry of publish) {
    const match = /^(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(entry);
    const host = Number(match?.[1]);
    const guest = Number(match?.[2]);
    if (!match || host > 65535 || guest < 1 || guest > 65535) {
      throw new BoardfleetError(
        'invalid-arguments',
        `-p takes HOST:GUEST (e.g. 8080:8080 or 0:8080), not ${entry}`,
      );
    }
    forwards.push({ host, guest, protocol: (match[3] as 'tcp' | 'udp' | undefined) ?? 'tcp' });
  }
  if (spec.network.mode === 'none' && forwards.length > 0) {
    throw new BoardfleetError(
      'invalid-arguments',
      `${spec.name} has no network (network.mode none): nothing to forward`,
    );
  }
  for (const port of spec.ports) {
    if (!forwards.some((forward) => forward.guest === port.guest && forward.protocol === port.protocol)) {
      forwards.push({ host: 0, guest: port.guest, protocol: port.protocol });
    }
  }
  return forwards;
}

/** A bundle folder or tar on disk, or an artifact downloaded from the server and verified. */
async function obtainBundle(artifact: string, scratch: string): Promise<{ dir: string; spec: LaunchSpec }> {
  const local = resolve(artifact);
  if (existsSync(local)) {
    if (statSync(local).isDirectory()) return { dir: local, spec: checkBundleDir(local, artifact) };
    const dir = join(scratch, 'bundle');
    return { dir, spec: await extractBundle(local, dir, artifact) };
  }
  const api = ApiClient.fromEnvironment();
  const record = await findArtifact(api, artifact);
  if (record.kind !== 'unikernel') {
    throw new BoardfleetError(
      'invalid-arguments',
      `${record.name} ${record.version} is a ${record.kind}, not a unikernel image`,
    );
  }
  const cacheDir = join(homedir(), '.cache', 'boardfleet', 'run-image');
  mkdirSync(cacheDir, { recursive: true });
  const file = join(cacheDir, `${record.sha256}.tar`);
  if (!existsSync(file) || (await sha256File(file)) !== record.sha256) await download(api, record, file);
  // The same checks an agent makes before it installs anything: the fleet key's signature, size, sha256.
  await verifyDeployment({
    deployment: {
      id: 'run-image',
      strategy: 'vm',
      artifact: record.name,
      version: record.version,
      sha256: record.sha256,
      size: record.size,
      url: `/api/v1/artifacts/${record.id}/content`,
      manifest: record.manifest,
      signature: record.signature,
      rollbackOrder: null,
    },
    fleetPublicKeyPem: await fetchFleetKey(fetch, api.baseUrl),
    downloadedPath: file,
    runningVersion: null,
  });
  say(`${record.name} ${record.version} (${record.id}): signature and sha256 verified`);
  const dir = join(scratch, 'bundle');
  return { dir, spec: await extractBundle(file, dir, `${record.name} ${record.version}`) };
}

async function findArtifact(api: ApiClient, reference: string): Promise<Artifact> {
  const at = reference.lastIndexOf('@');
  const name = at > 0 ? reference.slice(0, at) : reference;
  const version = at > 0 ? reference.slice(at + 1) : undefined;
  const { artifacts } = await api.request<ArtifactList>(
    'GET',
    `/api/v1/artifacts?${new URLSearchParams({ name, kind: 'unikernel', limit: '1000' })}`,
  );
  // Newest first: without a version, the newest.
  const found = artifacts.find((record) => version === undefined || record.version === version);
  if (found) return found;
  if (version === undefined) {
    try {
      return await api.request<Artifact>('GET', `/api/v1/artifacts/${encodeURIComponent(reference)}`);
    } catch {
      // Neither a name nor an id: say so below.
    }
  }
  throw new BoardfleetError(
    'not-found',
    `no file or folder ${reference}, and no unikernel artifact ${version ? `${name} version ${version}` : `named ${name} or with id ${name}`} on ${api.baseUrl}`,
  );
}

async function download(api: ApiClient, record: Artifact, file: string): Promise<void> {
  const response = await api.fetch(`${api.baseUrl}/api/v1/artifacts/${record.id}/content`, {
    headers: { authorization: `Bearer ${api.token}` },
  });
  if (!response.ok || !response.body) {
    throw new BoardfleetError(
      'download-failed',
      `downloading ${record.name} ${record.version} failed: HTTP ${response.status}`,
    );
  }
  const progress = progressBar('download', record.size);
  let received = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      progress.update(received);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(response.body as WebReadableStream),
      counter,
      createWriteStream(`${file}.partial`),
    );
  } finally {
    progress.stop();
  }
  renameSync(`${file}.partial`, file);
}
