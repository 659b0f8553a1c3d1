import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import { verifyManifest } from '../../protocol/manifest-signature.ts';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import { databaseBackends } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

describe.each(databaseBackends)('artifacts on $name', (backend) => {
  let server: TestServer;
  const content = randomBytes(256 * 1024);

  const upload = (query: Record<string, string | number>, body: Buffer, token = server.adminToken) =>
    fetch(
      `${server.httpUrl}/api/v1/artifacts?${new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]))}`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
        body,
      },
    );
  const meta = (overrides: Record<string, string | number> = {}) => ({
    name: 'demo-app',
    version: '1.0.0',
    kind: 'app-bundle',
    boards: 'rpi-4b,rpi-3b',
    sha256: sha256(content),
    size: content.length,
    ...overrides,
  });
  const blobCount = () =>
    readdirSync(join(server.dataDir, 'artifacts', 'sha256'), { recursive: true, withFileTypes: true }).filter(
      (entry) => entry.isFile(),
    ).length;

  /** A device registered for rpi-4b, with its credential for downloads (HTTP Basic). */
  const registerDevice = async (name: string) => {
    const { body: created } = await server.api<{ device: { id: string }; secret: string }>(
      'POST',
      '/api/v1/devices',
      { name, board: 'rpi-4b' },
    );
    const basic = `Basic ${Buffer.from(`${created.device.id}:${created.secret}`).toString('base64')}`;
    return { deviceId: created.device.id, basic };
  };
  /** Sends the device the artifact through a release and a rollout, as the fleet does. */
  const deploy = async (deviceId: string, artifactId: string) => {
    const release = `for-${deviceId}`;
    await server.api('POST', '/api/v1/releases', { name: release, artifacts: { 'rpi-4b': artifactId } });
    const { status, body } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { deviceIds: [deviceId] },
      waves: [{ percent: 100 }],
    });
    expect(status).toBe(201);
    await eventually('the device notified', async () => {
      const { body: rollout } = await server.api<{ devices: Array<{ state: string }> }>(
        'GET',
        `/api/v1/rollouts/${body.id}`,
      );
      return rollout.devices[0]?.state === 'notified';
    });
  };

  beforeAll(async () => {
    server = await startTestServer(backend);
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it('stores an upload with a manifest signed by the fleet key', async () => {
    const response = await upload(meta(), content);
    expect(response.status).toBe(201);
    const artifact = (await response.json()) as ArtifactRecord;
    expect(artifact).toMatchObject({
      name: 'demo-app',
      version: '1.0.0',
      boards: ['rpi-3b', 'rpi-4b'],
      sha256: sha256(content),
      size: content.length,
    });
    const { body: key } = await server.api<{ publicKeyPem: string }>(
      'GET',
      '/api/v1/fleet-key',
      undefined,
      '',
    );
    expect(verifyManifest(artifact.manifest, artifact.signature, key.publicKeyPem)).toMatchObject({
      sha256: sha256(content),
      version: '1.0.0',
    });
    const tampered = artifact.manifest.replace('"1.0.0"', '"9.0.0"');
    expect(verifyManifest(tampered, artifact.signature, key.publicKeyPem)).toBeNull();
  });

  it('stores the same content once', async () => {
    const before = blobCount();
    expect((await upload(meta({ name: 'demo-app-copy' }), content)).status).toBe(201);
    expect((await upload(meta(), content)).status).toBe(201);
    expect(blobCount()).toBe(before);
  });

  it.each([
    ['a wrong sha256', { sha256: 'a'.repeat(64) }, `the upload's sha256 is ${'__actual__'}`],
    [
      'a declared size that is too small',
      { size: 1000 },
      `the body has ${256 * 1024} bytes (Content-Length), not the declared size 1000`,
    ],
    [
      'a declared size that is too large',
      { size: 999_999 },
      `the body has ${256 * 1024} bytes (Content-Length), not the declared size 999999`,
    ],
  ])('rejects an upload with %s and keeps nothing', async (_label, overrides, message) => {
    const before = blobCount();
    const response = await upload(meta({ version: '1.0.1', ...overrides }), content);
    expect(response.status).toBe(400);
    const body = (await response.json()) as { message: string };
    expect(body.message).toContain(message.replace('__actual__', sha256(content)));
    expect(blobCount()).toBe(before);
    expect(
      (
        await server.api<{ artifacts: ArtifactRecord[] }>('GET', '/api/v1/artifacts?name=demo-app')
      ).body.artifacts.map((a) => a.version),
    ).toEqual(['1.0.0']);
    expect(readdirSync(join(server.dataDir, 'artifacts', 'incoming'))).toEqual([]);
  });

  it('refuses new content under an existing name and version', async () => {
    const other = randomBytes(100);
    const response = await upload(meta({ sha256: sha256(other), size: other.length }), other);
    expect(response.status).toBe(409);
  });

  it('refuses a version that is not semver', async () => {
    const response = await upload(meta({ version: 'latest' }), content);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { message: string }).message).toContain(
      'version: must be a semantic version',
    );
  });

  it('serves the content with Range requests to a device with its credentials, and to nobody else', async () => {
    const { body: list } = await server.api<{ artifacts: ArtifactRecord[] }>(
      'GET',
      '/api/v1/artifacts?name=demo-app',
    );
    const artifact = list.artifacts[0]!;
    const { deviceId, basic } = await registerDevice('downloader');
    await deploy(deviceId, artifact.id);
    const url = `${server.httpUrl}/api/v1/artifacts/${artifact.id}/content`;

    const resumed = await fetch(url, { headers: { authorization: basic, range: 'bytes=1000-' } });
    expect(resumed.status).toBe(206);
    expect(Buffer.from(await resumed.arrayBuffer()).equals(content.subarray(1000))).toBe(true);

    const whole = await fetch(url, { headers: { authorization: basic } });
    expect(sha256(Buffer.from(await whole.arrayBuffer()))).toBe(artifact.sha256);

    const wrong = `Basic ${Buffer.from(`${deviceId}:bfd_wrong`).toString('base64')}`;
    expect((await fetch(url, { headers: { authorization: wrong } })).status).toBe(401);
    expect((await fetch(url)).status).toBe(401);
  });

  it('lets a device download only what a deployment sent it; anything else is 404, as if missing', async () => {
    const { body: list } = await server.api<{ artifacts: ArtifactRecord[] }>(
      'GET',
      '/api/v1/artifacts?name=demo-app',
    );
    const artifact = list.artifacts[0]!;
    const deployed = await registerDevice('deployed');
    const other = await registerDevice('other');
    await deploy(deployed.deviceId, artifact.id);
    const url = `${server.httpUrl}/api/v1/artifacts/${artifact.id}/content`;
    const answer = async (authorization: string, to = url) => {
      const response = await fetch(to, { headers: { authorization } });
      return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
    };

    expect(sha256((await answer(deployed.basic)).body)).toBe(artifact.sha256);
    const refused = await answer(other.basic);
    const missing = await answer(other.basic, `${server.httpUrl}/api/v1/artifacts/art-missing/content`);
    expect(refused.status).toBe(404);
    expect(missing.status).toBe(404);
    expect(refused.body.toString()).toBe(missing.body.toString().replace('art-missing', artifact.id));
    const operator = await answer(`Bearer ${server.adminToken}`);
    expect(operator.status).toBe(200);
    expect(sha256(operator.body)).toBe(artifact.sha256);
  });

  describe('releases', () => {
    it('pairs boards with artifacts built for them', async () => {
      const { body: list } = await server.api<{ artifacts: ArtifactRecord[] }>(
        'GET',
        '/api/v1/artifacts?name=demo-app',
      );
      const artifactId = list.artifacts[0]!.id;
      const created = await server.api<{ name: string; artifacts: Record<string, string> }>(
        'POST',
        '/api/v1/releases',
        {
          name: '2026.11',
          artifacts: { 'rpi-4b': artifactId, '*': artifactId },
        },
      );
      expect(created.status).toBe(201);
      const fetched = await server.api<{ artifacts: Record<string, string> }>(
        'GET',
        '/api/v1/releases/2026.11',
      );
      expect(fetched.body.artifacts).toEqual({ '*': artifactId, 'rpi-4b': artifactId });
    });

    it('refuses an artifact for a board it was not built for, or a missing one', async () => {
      const { body: list } = await server.api<{ artifacts: ArtifactRecord[] }>(
        'GET',
        '/api/v1/artifacts?name=demo-app',
      );
      const response = await server.api<{ message: string }>('POST', '/api/v1/releases', {
        name: 'bad',
        artifacts: { uno: list.artifacts[0]!.id, 'rpi-3b': 'art-missing' },
      });
      expect(response.status).toBe(400);
      expect(response.body.message).toBe(
        'cannot create release bad: uno: artifact demo-app 1.0.0 is built for rpi-3b, rpi-4b, not uno; rpi-3b: artifact art-missing not found',
      );
    });
  });
});
