import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import { databaseBackends } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

describe.each(databaseBackends)('artifact boards on $name', (backend) => {
  let server: TestServer;
  const content = randomBytes(4096);

  const upload = (boards: string) =>
    fetch(
      `${server.httpUrl}/api/v1/artifacts?${new URLSearchParams({
        name: 'board-check',
        version: '1.0.0',
        kind: 'app-bundle',
        boards,
        sha256: sha256(content),
        size: String(content.length),
      })}`,
      {
        method: 'POST',
        headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/octet-stream' },
        body: content,
      },
    );
  const storedFiles = () =>
    readdirSync(join(server.dataDir, 'artifacts'), { recursive: true, withFileTypes: true }).filter((entry) =>
      entry.isFile(),
    ).length;
  const storedArtifacts = async () =>
    (await server.api<{ artifacts: ArtifactRecord[] }>('GET', '/api/v1/artifacts?name=board-check')).body
      .artifacts;

  beforeAll(async () => {
    server = await startTestServer(backend);
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it.each([',,,', ' , ', ''])('refuses boards=%j (no board at all) and stores nothing', async (boards) => {
    const response = await upload(boards);
    expect(response.status).toBe(400);
    expect(((await response.json()) as { message: string }).message).toMatch(
      /^invalid request body: boards: /,
    );
    expect(storedFiles()).toBe(0);
    expect(await storedArtifacts()).toEqual([]);
  });

  it('refuses a mistyped board id, naming it and listing the known boards, and stores nothing', async () => {
    const response = await upload('rpi-4b,rpi-4c,unoo');
    expect(response.status).toBe(400);
    const { code, message } = (await response.json()) as { code: string; message: string };
    expect(code).toBe('invalid-request');
    expect(message).toContain('unknown boards "rpi-4c", "unoo"');
    expect(message).toMatch(/Known boards: .*\brpi-4b\b.*\buno\b/);
    expect(message).not.toContain('"rpi-4b"');
    expect(storedFiles()).toBe(0);
    expect(await storedArtifacts()).toEqual([]);
  });

  it('accepts catalogue boards and the host boards of VM images', async () => {
    const response = await upload('rpi-4b,uno,generic-x64');
    expect(response.status).toBe(201);
    expect(((await response.json()) as ArtifactRecord).boards).toEqual(['generic-x64', 'rpi-4b', 'uno']);
  });
});
