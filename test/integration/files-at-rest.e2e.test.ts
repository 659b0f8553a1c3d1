import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import { databaseBackends, sqliteBackend } from '../support/databases.ts';
import { type ServerProcess, startServerProcess } from '../support/server-process.ts';
import { eventually } from '../support/test-server.ts';

const modeOf = (path: string) => statSync(path).mode & 0o777;

describe.each(databaseBackends)('files at rest on $name', (backend) => {
  let server: ServerProcess;
  const incoming = () => join(server.dataDir, 'artifacts', 'incoming');

  const uploadQuery = (content: Buffer, name: string) =>
    new URLSearchParams({
      name,
      version: '1.0.0',
      kind: 'app-bundle',
      boards: 'rpi-4b',
      sha256: sha256(content),
      size: String(content.length),
    });

  beforeAll(async () => {
    server = await startServerProcess(backend);
  }, 60_000);
  afterAll(async () => {
    await server?.dispose();
  });

  it('keeps the data directory 0700, even one created wider', async () => {
    expect(modeOf(server.dataDir)).toBe(0o700);
    chmodSync(server.dataDir, 0o755);
    await server.kill('SIGTERM');
    await server.start();
    expect(modeOf(server.dataDir)).toBe(0o700);
  }, 60_000);

  it('stores artifact blobs 0640', async () => {
    const content = randomBytes(2048);
    const response = await fetch(`${server.httpUrl}/api/v1/artifacts?${uploadQuery(content, 'mode-check')}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/octet-stream' },
      body: content,
    });
    expect(response.status).toBe(201);
    const artifact = (await response.json()) as ArtifactRecord;
    const blob = join(server.dataDir, 'artifacts', 'sha256', artifact.sha256.slice(0, 2), artifact.sha256);
    expect(modeOf(blob)).toBe(0o640);
  });

  it('removes the temporary file of an upload the server was killed in the middle of', async () => {
    const content = randomBytes(1024 * 1024);
    const upload = request(`${server.httpUrl}/api/v1/artifacts?${uploadQuery(content, 'interrupted')}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${server.adminToken}`,
        'content-type': 'application/octet-stream',
        'content-length': content.length,
      },
    });
    upload.on('error', () => undefined);
    upload.write(content.subarray(0, 64 * 1024));
    await eventually('the upload has a temporary file', () => readdirSync(incoming()).length === 1);
    await server.kill('SIGKILL');
    upload.destroy();
    expect(readdirSync(incoming())).toHaveLength(1);
    await server.start();
    expect(readdirSync(incoming())).toEqual([]);
  }, 60_000);
});

// The database files are the SQLite backend's alone; PostgreSQL keeps its own.
describe('SQLite files at rest', () => {
  let server: ServerProcess;

  beforeAll(async () => {
    server = await startServerProcess(sqliteBackend);
  }, 60_000);
  afterAll(async () => {
    await server?.dispose();
  });

  it('keeps the SQLite database and its WAL files 0600, even ones created wider', async () => {
    const path = server.databaseUrl.slice('sqlite:'.length);
    const files = [path, `${path}-wal`, `${path}-shm`];
    const modes = () => files.map((file) => [file, existsSync(file) ? modeOf(file) : 'missing']);
    expect(modes()).toEqual(files.map((file) => [file, 0o600]));
    for (const file of files) chmodSync(file, 0o644);
    await server.kill('SIGKILL');
    await server.start();
    expect(modes()).toEqual(files.map((file) => [file, 0o600]));
  }, 60_000);
});
