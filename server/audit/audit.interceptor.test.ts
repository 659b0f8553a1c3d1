import 'reflect-metadata';
import { Writable } from 'node:stream';
import type { CallHandler, ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import pino from 'pino';
import { lastValueFrom, of, throwError } from 'rxjs';
import { describe, expect, it } from 'vitest';
import type { Device, DevicePage } from '../../protocol/api/devices.ts';
import { operations } from '../../protocol/api/operations.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { AuthenticatedRequest } from '../auth/operator-auth.guard.ts';
import { ApiRoute } from '../common/api-route.ts';
import type { DatabaseHealth } from '../db/database-health.ts';
import type { AuditRepository, NewAuditEntry } from './audit.repository.ts';
import { AuditInterceptor } from './audit.interceptor.ts';

class Routes {
  @ApiRoute(operations.revokeDevice)
  revoke(): Promise<Device> {
    throw new Error('the interceptor is handed the answer, it does not call the handler');
  }

  @ApiRoute(operations.listDevices)
  list(): Promise<DevicePage> {
    throw new Error('the interceptor is handed the answer, it does not call the handler');
  }

  /** Like the dashboard's catch-all: not a row of the operations table. */
  page(): void {}
}

const device = { id: 'dev-1', name: 'kitchen-pi' } as Device;

/** The interceptor with a fake log table, a database that is up or down, and the lines it logs. */
function setUp(
  options: { database?: 'up' | 'down'; appendFails?: boolean; appendDone?: Promise<void> } = {},
) {
  const appended: NewAuditEntry[] = [];
  const repository = {
    append: async (entry: NewAuditEntry) => {
      if (options.appendFails) throw new Error('disk full');
      await options.appendDone;
      appended.push(entry);
    },
  } as unknown as AuditRepository;
  const health = { state: options.database ?? 'up', reason: 'connection refused' } as DatabaseHealth;
  const logged: Array<Record<string, unknown>> = [];
  const logger = pino(
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  const interceptor = new AuditInterceptor(new Reflector(), repository, { now: () => 5_000 }, health, logger);
  const request = {
    operator: { tokenId: 'tok-ops', name: 'ops', role: 'operator', expiresAt: null },
    headers: { authorization: 'Bearer bft_x' },
    params: { id: 'dev-1' },
    query: {},
    body: {},
  } as unknown as AuthenticatedRequest;
  const call = (handler: () => unknown, answer: CallHandler) =>
    lastValueFrom(
      interceptor.intercept(
        {
          getType: () => 'http',
          getHandler: () => handler,
          switchToHttp: () => ({ getRequest: () => request }),
        } as unknown as ExecutionContext,
        answer,
      ),
    );
  return { appended, logged, call };
}

const answering = (value: unknown): CallHandler => ({ handle: () => of(value) });
const failingWith = (error: unknown): CallHandler => ({ handle: () => throwError(() => error) });

describe('the audit interceptor', () => {
  it('writes the entry before the answer goes out', async () => {
    let finishWrite = () => {};
    const { appended, call } = setUp({ appendDone: new Promise((resolve) => (finishWrite = resolve)) });
    let answered = false;
    const answer = call(Routes.prototype.revoke, answering(device)).then((value) => {
      answered = true;
      return value;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect([answered, appended]).toEqual([false, []]);
    finishWrite();
    expect(await answer).toBe(device);
    expect(appended).toEqual([
      {
        at: 5_000,
        actor: 'ops',
        actorTokenId: 'tok-ops',
        via: 'token',
        action: 'device.revoke',
        target: 'dev-1',
        outcome: 'ok',
        detail: 'name kitchen-pi',
        reason: null,
      },
    ]);
  });

  it('records a failure with the message the caller gets, and passes the same error on', async () => {
    const { appended, call } = setUp();
    const refused = new BoardfleetError('conflict', 'device dev-1 is already revoked');
    await expect(call(Routes.prototype.revoke, failingWith(refused))).rejects.toBe(refused);
    const crash = new TypeError('cannot read properties of undefined');
    await expect(call(Routes.prototype.revoke, failingWith(crash))).rejects.toBe(crash);
    expect(appended.map(({ outcome, reason }) => ({ outcome, reason }))).toEqual([
      { outcome: 'failed', reason: 'device dev-1 is already revoked' },
      // What the caller of a 500 is told, not our stack's words.
      { outcome: 'failed', reason: 'internal server error' },
    ]);
  });

  it('answers as the action did when the entry cannot be written, and logs the entry', async () => {
    const { logged, call } = setUp({ appendFails: true });
    expect(await call(Routes.prototype.revoke, answering(device))).toBe(device);
    expect(logged).toEqual([
      expect.objectContaining({
        level: 50,
        msg: 'writing the audit log failed',
        entry: expect.objectContaining({ action: 'device.revoke', target: 'dev-1', outcome: 'ok' }),
      }),
    ]);
  });

  it('does not wait on a database that is down: the entry goes to the log at once', async () => {
    const { appended, logged, call } = setUp({ database: 'down' });
    const unavailable = new BoardfleetError('unavailable', 'the database is unavailable: try again shortly');
    await expect(call(Routes.prototype.revoke, failingWith(unavailable))).rejects.toBe(unavailable);
    expect(appended).toEqual([]);
    expect(logged).toEqual([
      expect.objectContaining({
        msg: 'audit entry not written: the database is down',
        reason: 'connection refused',
        entry: expect.objectContaining({ outcome: 'failed', reason: unavailable.message }),
      }),
    ]);
  });

  it('leaves reads and routes outside the operations table alone', async () => {
    const { appended, call } = setUp();
    const page = { devices: [], total: 0, limit: 100, offset: 0 };
    expect(await call(Routes.prototype.list, answering(page))).toBe(page);
    expect(await call(Routes.prototype.page, answering('index.html'))).toBe('index.html');
    expect(appended).toEqual([]);
  });
});
