import type { KeyObject } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevicePage } from '../../protocol/api/devices.ts';
import { draftRoot } from '../../protocol/tuf/root-draft.ts';
import { type TufRoot, type TufTimestampSigned, tufTime } from '../../protocol/tuf/metadata.ts';
import { readPrivateKey, signatureBy } from '../../protocol/tuf/signing.ts';
import { TufKeyRepository } from '../../server/tuf/tuf-key.repository.ts';
import { deploymentFromArtifact } from '../../server/rollouts/desired-deployment.ts';
import { readPrivateKeyFile } from '../../cli/tuf-key-files.ts';
import { secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { buildAppBundle } from '../support/app-bundles.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { deploymentRefusal, publishAsServer } from '../support/forged-desired.ts';
import { CountingProxy } from '../support/counting-proxy.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const BOARD = 'generic-x64';
const SLOW = 90_000;
const DAY_MS = 24 * 60 * 60 * 1000;

/** A provisioned agent process reaching the server at `serverUrl`, online. */
async function startAgentOf(server: TestServer, serverUrl: string, name: string) {
  const { token } = (await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name }))
    .body;
  const agent = startAgentProcess([
    ...['--server', serverUrl, '--provisioning-token-file', secretFile(token)],
    ...['--name', name, '--board', BOARD, '--data-dir', mkdtempSync(join(tmpdir(), 'bf-attacked-'))],
  ]);
  const deviceId = await eventually(
    `${name} online`,
    async () =>
      (await server.api<DevicePage>('GET', '/api/v1/devices?limit=10')).body.devices.find(
        (candidate) => candidate.name === name && candidate.online,
      )?.id,
    SLOW,
  );
  return { agent, deviceId };
}

/** A fleet with a TUF root of two holders, both needed; the holders' key files are in the folder returned. */
async function rootedServer(options: { clock?: { now(): number } } = {}) {
  const server = await startTestServer(sqliteBackend, {}, options);
  const rootKeys = mkdtempSync(join(tmpdir(), 'bf-attack-root-'));
  await cliRunner({ url: server.httpUrl, token: server.adminToken }).ok(
    ...['keys', 'init', '--holders', '2', '--threshold', '2', '--out', rootKeys],
  );
  return { server, rootKeys };
}

/** A release of hello that targets signs, sent to the device as the server would; its deployment id. */
async function sendSignedRelease(server: TestServer, deviceId: string, version: string): Promise<string> {
  const bundle = await buildAppBundle({ name: 'hello', version });
  const artifact = await uploadArtifact(server, bundle, { name: 'hello', version, boards: [BOARD] });
  const id = `dep-${version}`;
  await publishAsServer(server, deviceId, deploymentFromArtifact(artifact, id));
  return id;
}

/**
 * Issue 16 item 8, the attacks that need the metadata itself in hostile hands: the agent reaches
 * the server through a proxy that answers chosen `/tuf/` paths with the attacker's bytes. Each
 * attempt is a release the targets key really signed, so only the metadata attack stands between
 * it and an install: each ends with nothing installed and the TUF client's reason reported.
 */
describe('TUF attacks through a hostile metadata path, against a real agent', () => {
  let server: TestServer;
  let proxy: CountingProxy;
  let agent: ReturnType<typeof startAgentProcess>;
  let deviceId: string;
  let rootKeys: string;
  let minor = 0;

  const runningVersion = async () =>
    (await server.api<DevicePage>('GET', '/api/v1/devices?limit=10')).body.devices.find(
      (d) => d.id === deviceId,
    )?.runningVersion;
  const tuf = async (path: string) =>
    Buffer.from(await (await fetch(`${server.httpUrl}/tuf/${path}`)).arrayBuffer());

  /** The next release of hello, signed and sent to the device. */
  async function sendNextRelease(): Promise<{ id: string; version: string }> {
    const version = `1.${++minor}.0`;
    return { id: await sendSignedRelease(server, deviceId, version), version };
  }

  /** Sends a signed release while the proxy serves the attacker's bytes; the reason it was refused. */
  async function refusedWith(forged: Record<string, Buffer>): Promise<string> {
    const before = await runningVersion();
    for (const [path, bytes] of Object.entries(forged)) proxy.overrides.set(path, bytes);
    try {
      const { id } = await sendNextRelease();
      const reason = await deploymentRefusal(server, deviceId, id, SLOW);
      expect(await runningVersion()).toBe(before);
      return reason;
    } finally {
      proxy.overrides.clear();
    }
  }

  /** The fleet's timestamp key now, as an attacker who stole it from the server holds it. */
  async function stolenTimestampKey(): Promise<KeyObject> {
    const keys = (await new TufKeyRepository(server.db).list()).filter((key) => key.role === 'timestamp');
    return readPrivateKey(keys.at(-1)!.privateKeyPem, 'the stolen timestamp key');
  }

  /** The server's timestamp.json as `change` leaves it, signed by `key` alone. */
  async function forgedTimestamp(
    key: KeyObject,
    change: (signed: TufTimestampSigned) => void,
  ): Promise<Buffer> {
    const { signed } = JSON.parse((await tuf('timestamp.json')).toString()) as { signed: TufTimestampSigned };
    change(signed);
    return Buffer.from(JSON.stringify({ signed, signatures: [signatureBy(signed, key)] }));
  }

  async function installs(): Promise<void> {
    const { version } = await sendNextRelease();
    await eventually(`the device on ${version}`, async () => (await runningVersion()) === version, SLOW);
  }

  beforeAll(async () => {
    ({ server, rootKeys } = await rootedServer());
    proxy = new CountingProxy(server.httpUrl);
    ({ agent, deviceId } = await startAgentOf(server, await proxy.start(), 'attacked-pi'));
    await installs();
  }, SLOW * 2);

  afterAll(async () => {
    if (agent) await stopProcess(agent, 'SIGTERM');
    await proxy?.stop();
    await server?.dispose();
  });

  it(
    'refuses endless data: a timestamp.json that never ends is cut off at its length limit',
    async () => {
      const reason = await refusedWith({ '/tuf/timestamp.json': Buffer.alloc(4 * 1024 * 1024, 0x20) });
      expect(reason).toMatch(/update metadata was refused: .*(length|Max length)/i);
    },
    SLOW,
  );

  it(
    'refuses a rollback attack: a timestamp older than one the device has seen',
    async () => {
      const old = await tuf('timestamp.json');
      await installs(); // the device now trusts a newer timestamp
      const reason = await refusedWith({ '/tuf/timestamp.json': old });
      expect(reason).toMatch(/update metadata was refused: .*timestamp.*version/i);
    },
    SLOW * 2,
  );

  it(
    'refuses mix-and-match: targets.json of another version than the snapshot names',
    async () => {
      const { id, version } = await sendNextRelease();
      await eventually(`the device on ${version}`, async () => (await runningVersion()) === version, SLOW);
      expect(id).toBeTruthy();
      const snapshot = JSON.parse((await tuf('timestamp.json')).toString()) as {
        signed: { meta: Record<string, { version: number }> };
      };
      const snapshotVersion = snapshot.signed.meta['snapshot.json']!.version;
      // The next release makes targets version N+1; the attacker answers it with version N.
      const current = JSON.parse((await tuf(`${snapshotVersion}.snapshot.json`)).toString()) as {
        signed: { meta: Record<string, { version: number }> };
      };
      const targetsVersion = current.signed.meta['targets.json']!.version;
      const reason = await refusedWith({
        [`/tuf/${targetsVersion + 1}.targets.json`]: await tuf(`${targetsVersion}.targets.json`),
      });
      expect(reason).toMatch(/update metadata was refused: .*(targets|hash|length|version)/i);
    },
    SLOW * 2,
  );

  it(
    'refuses a root signed by one of the two root keys: the threshold is not met',
    async () => {
      const root = JSON.parse((await tuf('root.json')).toString()) as TufRoot;
      const onlineKeys = Object.fromEntries(
        (['targets', 'snapshot', 'timestamp'] as const).map((role) => [
          role,
          root.signed.keys[root.signed.roles[role].keyids[0]!]!,
        ]),
      ) as Parameters<typeof draftRoot>[0]['onlineKeys'];
      const next = draftRoot({
        previous: root.signed,
        rootKeys: null,
        threshold: 1,
        onlineKeys,
        expiresAt: Date.now() + 30 * DAY_MS,
      });
      const stolen = readPrivateKeyFile(join(rootKeys, 'root-1.key'));
      const forged: TufRoot = { signed: next, signatures: [signatureBy(next, stolen)] };
      const reason = await refusedWith({
        [`/tuf/${root.signed.version + 1}.root.json`]: Buffer.from(JSON.stringify(forged)),
      });
      expect(reason).toMatch(/update metadata was refused: .*(root|signature|threshold)/i);
    },
    SLOW,
  );

  it(
    'refuses an indefinite freeze: a timestamp the fleet signed, served after its day is over',
    async () => {
      // What a mirror frozen in time serves a day on: genuine, newer than the device has seen, expired.
      const frozen = await forgedTimestamp(await stolenTimestampKey(), (signed) => {
        signed.version += 1;
        signed.expires = tufTime(Date.now() - 60 * 60 * 1000);
      });
      const reason = await refusedWith({ '/tuf/timestamp.json': frozen });
      expect(reason).toMatch(/update metadata was refused: .*timestamp\.json is expired/i);
    },
    SLOW,
  );

  /** Taken while it signs, before the operators rotate it out in the fast-forward test. */
  let rotatedOutKey: KeyObject;

  it(
    'recovers from a fast-forward: versions a stolen timestamp key lifted are undone by rotating that key',
    async () => {
      rotatedOutKey = await stolenTimestampKey();
      const lifted = await forgedTimestamp(rotatedOutKey, (signed) => {
        signed.version = 1_000_000;
        signed.meta['snapshot.json']!.version = 1_000_000;
      });
      // The snapshot it names was never made: nothing installs.
      expect(await refusedWith({ '/tuf/timestamp.json': lifted })).toMatch(
        /update metadata was refused: .*1000000\.snapshot\.json answered 404/,
      );
      // The device now holds timestamp version 1,000,000, and the fleet's own metadata looks old to it.
      expect(await refusedWith({})).toMatch(/update metadata was refused: .*timestamp version/i);

      const cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
      await cli.ok('keys', 'rotate', 'timestamp');
      const draft = join(rootKeys, 'rotated.json');
      await cli.ok('keys', 'draft-root', '--out', draft);
      for (const holder of ['root-1.key', 'root-2.key'])
        await cli.ok('keys', 'sign', draft, '--key', join(rootKeys, holder));
      await cli.ok('keys', 'publish', draft);
      // The device follows to root version 2, and the timestamp the old key signed no longer counts.
      await installs();
    },
    SLOW * 3,
  );

  it(
    'refuses metadata signed with a rotated-out key, however new it claims to be',
    async () => {
      const stale = await forgedTimestamp(rotatedOutKey, (signed) => {
        signed.version += 1_000;
      });
      const reason = await refusedWith({ '/tuf/timestamp.json': stale });
      expect(reason).toMatch(/update metadata was refused: .*timestamp.*(signed|threshold|keys)/i);
    },
    SLOW,
  );
});
