import 'reflect-metadata';
import { type DynamicModule, RequestMethod, type Type } from '@nestjs/common';
import { METHOD_METADATA, MODULE_METADATA, PATH_METADATA } from '@nestjs/common/constants.js';
import { Validator } from '@seriousme/openapi-schema-validator';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expressPath } from '../../protocol/api/operation.ts';
import { type OperationId, operations } from '../../protocol/api/operations.ts';
import { AppModule } from '../../server/app.module.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { sqliteBackend } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

interface OpenApiOperation {
  operationId: string;
  requestBody?: { content: Record<string, { schema?: unknown }> };
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
}
type OpenApiDocument = Record<string, unknown> & { paths: Record<string, Record<string, OpenApiOperation>> };

/** The dashboard's pages and assets: served by the server, not part of the API. */
const DASHBOARD_ROUTES = ['get /{*path}'];

const tableRoutes = () =>
  Object.values(operations)
    .map((operation) => `${operation.method} ${expressPath(operation.path)}`)
    .sort();

/** Every route the controllers declare, read from the metadata Nest's router reads. */
function declaredRoutes(): string[] {
  const controllers = controllersOf(AppModule.forRoot({ logger: pino({ level: 'silent' }), values: [] }));
  const routes: string[] = [];
  for (const controller of controllers) {
    const prefix = [Reflect.getMetadata(PATH_METADATA, controller) as string | string[]].flat().join('/');
    for (const name of Object.getOwnPropertyNames(controller.prototype)) {
      if (name === 'constructor') continue;
      const handler = Object.getOwnPropertyDescriptor(controller.prototype, name)?.value as unknown;
      if (typeof handler !== 'function' || !Reflect.hasMetadata(PATH_METADATA, handler)) continue;
      const path = [Reflect.getMetadata(PATH_METADATA, handler) as string | string[]].flat().join('/');
      const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod];
      const full = `/${prefix}/${path}`.replace(/\/+/g, '/').replace(/(.)\/$/, '$1');
      routes.push(`${method.toLowerCase()} ${full}`);
    }
  }
  return routes.sort();
}

function controllersOf(module: DynamicModule | Type): Type[] {
  const dynamic = 'module' in module ? module : undefined;
  const moduleClass = dynamic ? dynamic.module : (module as Type);
  const metadata = (key: string) => (Reflect.getMetadata(key, moduleClass) as unknown[] | undefined) ?? [];
  const imports = [...metadata(MODULE_METADATA.IMPORTS), ...(dynamic?.imports ?? [])] as Array<
    DynamicModule | Type
  >;
  return [
    ...(metadata(MODULE_METADATA.CONTROLLERS) as Type[]),
    ...((dynamic?.controllers ?? []) as Type[]),
    ...imports.flatMap(controllersOf),
  ];
}

describe('the OpenAPI document', () => {
  let server: TestServer;
  let document: OpenApiDocument;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    document = (await server.api<OpenApiDocument>('GET', '/api/docs/openapi.json', undefined, '')).body;
  });

  afterAll(async () => {
    await server?.dispose();
  });

  const documented = () =>
    Object.entries(document.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({ path, method, operation })),
    );

  it('is a valid OpenAPI document', async () => {
    const validator = new Validator();
    const result = await validator.validate(document);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('lists every operation of the table, and nothing else', () => {
    expect(
      documented()
        .map(({ operation }) => operation.operationId)
        .sort(),
    ).toEqual(Object.keys(operations).sort());
  });

  it('gives every operation a response schema and every write a request body schema', () => {
    for (const { path, method, operation } of documented()) {
      const success = Object.entries(operation.responses).filter(([status]) => status.startsWith('2'));
      expect(success, `${method} ${path}`).toHaveLength(1);
      const content = Object.values(success[0]?.[1].content ?? {});
      expect(content.length, `${method} ${path} answers`).toBeGreaterThan(0);
      for (const type of content) expect(type.schema, `${method} ${path} answer schema`).toBeDefined();
      if (['post', 'put', 'patch'].includes(method)) {
        const body = Object.values(operation.requestBody?.content ?? {});
        expect(body.length, `${method} ${path} request body`).toBeGreaterThan(0);
        for (const type of body) expect(type.schema, `${method} ${path} request schema`).toBeDefined();
      }
    }
  });
});

describe('the operations table', () => {
  let server: TestServer;
  let device: { id: string; secret: string };

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    const created = await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
      name: 'contract',
      tags: ['lab'],
    });
    device = { id: created.body.device.id, secret: created.body.secret };
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('names exactly the routes the controllers declare', () => {
    expect(declaredRoutes().filter((route) => !DASHBOARD_ROUTES.includes(route))).toEqual(tableRoutes());
  });

  it('names only routes the running server answers', async () => {
    for (const operation of Object.values(operations)) {
      const path = operation.path.replace(/\{action\}/, 'pause').replace(/\{\w+\}/g, 'x');
      const response = await fetch(`${server.httpUrl}${path}`, { method: operation.method.toUpperCase() });
      await response.body?.cancel();
      expect(response.status, `${operation.method} ${operation.path}`).not.toBe(404);
    }
  });

  /** Calls an operation as the admin; checks the status and that the answer is exactly its response schema. */
  async function call(
    id: OperationId,
    options: { params?: Record<string, string>; query?: string; body?: unknown } = {},
  ): Promise<unknown> {
    const operation = operations[id];
    const path = operation.path.replace(/\{(\w+)\}/g, (_, name: string) =>
      encodeURIComponent(options.params?.[name] ?? device.id),
    );
    const response = await server.api(
      operation.method.toUpperCase(),
      `${path}${options.query ?? ''}`,
      options.body,
    );
    expect(response.status, `${id}: ${JSON.stringify(response.body)}`).toBe(operation.status);
    if (operation.response.type === 'json') {
      expect(operation.response.schema.parse(response.body), id).toEqual(response.body);
    }
    return response.body;
  }

  it('answers every JSON operation with exactly its response schema', async () => {
    const artifact = await uploadArtifact(server, Buffer.from('hello'), {
      name: 'contract-app',
      version: '1.0.0',
      boards: ['rpi-4b'],
    });
    expect(operations.uploadArtifact.response.schema.parse(artifact)).toEqual(artifact);
    const rollout = {
      release: 'contract-release',
      target: { tags: ['lab'] },
      waves: [{ percent: 100, requiresApproval: true }],
    };

    await call('listDevices', { query: '?online=false&sort=name' });
    await call('getDevice');
    await call('updateDevice', { body: { tags: ['lab', 'bench'] } });
    await call('sendCommand', { body: { type: 'ping' } });
    await call('getDeviceHealth');
    await call('getDevicePresence');
    await call('getDeviceEvents');
    await call('listArtifacts');
    await call('getArtifact', { params: { id: artifact.id } });
    await call('getFleetKey');
    await call('createRelease', { body: { name: 'contract-release', artifacts: { 'rpi-4b': artifact.id } } });
    await call('listReleases');
    await call('getRelease', { params: { idOrName: 'contract-release' } });
    await call('previewRollout', { body: rollout });
    const created = (await call('createRollout', { body: rollout })) as { id: string };
    await call('listRollouts');
    await call('getRollout', { params: { id: created.id } });
    await call('actOnRollout', { params: { id: created.id, action: 'pause' } });
    await call('listDeviceDeployments');
    await call('listBuilds');
    await call('getFleetSummary');
    await call('createProvisioningToken', { body: { name: 'contract' } });
    await call('createOperatorToken', { body: { name: 'contract', role: 'viewer' } });
    await call('getSession');
    await call('listAuditEntries', { query: `?since=${new Date(0).toISOString()}&actor=admin&limit=10` });
    await call('healthz');
    await call('revokeDevice');
  });

  it('answers the operations that authenticate devices and agents with their response schemas', async () => {
    const provisioningToken = (
      (await server.api('POST', '/api/v1/provisioning-tokens', { name: 'agents' })).body as { token: string }
    ).token;
    const provisioned = await fetch(`${server.httpUrl}/api/v1/provision`, {
      method: 'POST',
      headers: { authorization: `Bearer ${provisioningToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'provisioned' }),
    });
    expect(provisioned.status).toBe(operations.provision.status);
    const credentials = operations.provision.response.schema.parse(await provisioned.json());

    const uploaded = await fetch(
      `${server.httpUrl}/api/v1/devices/${credentials.deviceId}/consoles/vm-app/1.0.0`,
      {
        method: 'PUT',
        headers: {
          authorization: `Basic ${Buffer.from(`${credentials.deviceId}:${credentials.secret}`).toString('base64')}`,
          'content-type': 'text/plain',
        },
        body: 'booted\n',
      },
    );
    expect(uploaded.status).toBe(operations.uploadConsole.status);
    const summary: unknown = await uploaded.json();
    expect(operations.uploadConsole.response.schema.parse(summary)).toEqual(summary);
    const list = await server.api('GET', `/api/v1/devices/${credentials.deviceId}/consoles`);
    expect(operations.listConsoles.response.schema.parse(list.body)).toEqual(list.body);
  });
});
