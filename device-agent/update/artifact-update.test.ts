import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DesiredState } from '../../protocol/schemas.ts';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import { deploymentFromArtifact } from '../../server/rollouts/desired-deployment.ts';
import { sendToDevice, uploadArtifact } from '../../test/support/artifacts.ts';
import { sqliteBackend } from '../../test/support/databases.ts';
import { startTestServer, type TestServer } from '../../test/support/test-server.ts';
import { downloadArtifact } from './artifact-download.ts';
import { verifyDeployment } from './artifact-verify.ts';

type Deployment = NonNullable<DesiredState['deployment']>;

describe('artifact download and verification against a real server', () => {
  let server: TestServer;
  let artifact: ArtifactRecord;
  let auth: { deviceId: string; secret: string };
  let fleetKey: string;
  const content = randomBytes(300 * 1024);
  const work = mkdtempSync(join(tmpdir(), 'boardfleet-agent-update-'));

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    artifact = await uploadArtifact(server, content, { name: 'app', version: '2.0.0', boards: ['rpi-4b'] });
    const { body } = await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
      name: 'updater',
    });
    auth = { deviceId: body.device.id, secret: body.secret };
    // A device may download only what it was sent.
    await sendToDevice(server, auth.deviceId, deploymentFromArtifact(artifact, 'dep-1'));
    fleetKey = (await server.api<{ publicKeyPem: string }>('GET', '/api/v1/fleet-key', undefined, '')).body
      .publicKeyPem;
  });
  afterAll(async () => {
    await server?.dispose();
  });

  const url = () => `${server.httpUrl}/api/v1/artifacts/${artifact.id}/content`;
  const deployment = (overrides: Partial<Deployment> = {}): Deployment => ({
    ...deploymentFromArtifact(artifact, 'dep-1'),
    url: url(),
    ...overrides,
  });

  it('resumes an interrupted download from the byte it reached', async () => {
    const destination = join(work, 'resume.bin');
    writeFileSync(destination, content.subarray(0, 100_000));
    const { transferred } = await downloadArtifact({
      url: url(),
      destination,
      expectedSize: content.length,
      auth,
    });
    expect(transferred).toBe(content.length - 100_000);
    expect(readFileSync(destination).equals(content)).toBe(true);
  });

  it('reports a truncated transfer, then completes it on the next attempt', async () => {
    // A server that drops the connection half-way through the body.
    const dropper = createServer((_request, response) => {
      response.writeHead(200, { 'content-length': String(content.length) });
      response.write(content.subarray(0, 50_000), () => setTimeout(() => response.destroy(), 100));
    });
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve));
    const destination = join(work, 'truncated.bin');
    try {
      await expect(
        downloadArtifact({
          url: `http://127.0.0.1:${(dropper.address() as { port: number }).port}/`,
          destination,
          expectedSize: content.length,
          auth,
        }),
      ).rejects.toMatchObject({ code: 'download-truncated' });
    } finally {
      dropper.close();
    }
    const partial = readFileSync(destination).length;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(content.length);
    const { transferred } = await downloadArtifact({
      url: url(),
      destination,
      expectedSize: content.length,
      auth,
    });
    expect(transferred).toBe(content.length - partial);
    expect(readFileSync(destination).equals(content)).toBe(true);
  });

  it.each([
    { status: 503, code: 'unavailable' },
    { status: 500, code: 'unavailable' },
    { status: 404, code: 'download-failed' },
  ])('tells a server error that may pass ($status) from a refusal', async ({ status, code }) => {
    const answering = createServer((_request, response) => response.writeHead(status).end());
    await new Promise<void>((resolve) => answering.listen(0, '127.0.0.1', resolve));
    try {
      await expect(
        downloadArtifact({
          url: `http://127.0.0.1:${(answering.address() as { port: number }).port}/`,
          destination: join(work, `answer-${status}.bin`),
          expectedSize: content.length,
          auth,
        }),
      ).rejects.toMatchObject({ code, message: expect.stringContaining(`HTTP ${status}`) });
    } finally {
      answering.close();
    }
  });

  it('refuses more bytes than expected', async () => {
    await expect(
      downloadArtifact({ url: url(), destination: join(work, 'oversize.bin'), expectedSize: 1000, auth }),
    ).rejects.toThrow('the server sent more than the expected 1000 bytes');
  });

  it('refuses a download with a wrong device secret', async () => {
    await expect(
      downloadArtifact({
        url: url(),
        destination: join(work, 'denied.bin'),
        expectedSize: content.length,
        auth: { ...auth, secret: 'bfd_wrong' },
      }),
    ).rejects.toThrow('HTTP 401');
  });

  describe('verification', () => {
    const good = () => {
      const path = join(work, 'verify.bin');
      writeFileSync(path, content);
      return path;
    };

    it('accepts a signed, intact artifact', async () => {
      const manifest = await verifyDeployment({
        deployment: deployment(),
        fleetPublicKeyPem: fleetKey,
        downloadedPath: good(),
        runningVersion: '1.0.0',
      });
      expect(manifest.version).toBe('2.0.0');
    });

    it.each([
      ['unsigned', () => ({ deployment: deployment({ signature: '' }) }), 'does not match the fleet key'],
      [
        'signed by another key',
        () => {
          const { privateKey } = generateKeyPairSync('ed25519');
          return {
            deployment: deployment({
              signature: sign(null, Buffer.from(artifact.manifest), privateKey).toString('base64'),
            }),
          };
        },
        'does not match the fleet key',
      ],
      [
        'a tampered manifest',
        () => ({
          deployment: deployment({
            manifest: artifact.manifest.replace('"2.0.0"', '"2.0.1"'),
            version: '2.0.1',
          }),
        }),
        'does not match the fleet key',
      ],
      [
        'a deployment that disagrees with its manifest',
        () => ({ deployment: deployment({ version: '9.9.9' }) }),
        'disagrees with the deployment on version',
      ],
      [
        'a tampered payload',
        () => {
          const path = join(work, 'tampered.bin');
          const bytes = Buffer.from(content);
          bytes[1234] = (bytes[1234] ?? 0) ^ 0xff;
          writeFileSync(path, bytes);
          return { downloadedPath: path };
        },
        'the signed manifest says',
      ],
      [
        'a truncated payload',
        () => {
          const path = join(work, 'short.bin');
          writeFileSync(path, content.subarray(0, 1000));
          return { downloadedPath: path };
        },
        `has 1000 bytes, the signed manifest says ${300 * 1024}`,
      ],
      [
        'a downgrade without the rollback flag',
        () => ({ runningVersion: '3.0.0' }),
        'refusing 2.0.0: it is older than the running 3.0.0',
      ],
    ])('refuses %s', async (_label, change, message) => {
      await expect(
        verifyDeployment({
          deployment: deployment(),
          fleetPublicKeyPem: fleetKey,
          downloadedPath: good(),
          runningVersion: '1.0.0',
          ...change(),
        }),
      ).rejects.toThrow(message);
    });

    it('accepts an older version when the server asks for a rollback', async () => {
      const manifest = await verifyDeployment({
        deployment: deployment({ rollbackOrder: 'ro-test.order' }),
        fleetPublicKeyPem: fleetKey,
        downloadedPath: good(),
        runningVersion: '3.0.0',
      });
      expect(manifest.version).toBe('2.0.0');
    });
  });
});
