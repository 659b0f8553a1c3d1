import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { DatabaseHealth, describeFailure, isConnectionLoss, nextPingDelay } from './database-health.ts';

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

describe('nextPingDelay', () => {
  it.each([
    [0, 5_000],
    [1, 250],
    [2, 500],
    [4, 2_000],
    [5, 4_000],
    [6, 5_000],
    [30, 5_000],
  ])('after %i failed pings waits %i ms', (failures, delay) => {
    expect(nextPingDelay(failures)).toBe(delay);
  });
});

describe('isConnectionLoss', () => {
  it.each([
    ['a refused connection', withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED'), true],
    ['a reset socket', withCode('read ECONNRESET', 'ECONNRESET'), true],
    ['pg_terminate_backend', withCode('terminating connection due to administrator command', '57P01'), true],
    ['a server starting up', withCode('the database system is starting up', '57P03'), true],
    ['a connection exception class', withCode('connection failure', '08006'), true],
    ['pg losing the socket', new Error('Connection terminated unexpectedly'), true],
    [
      'a client already broken',
      new Error('Client has encountered a connection error and is not queryable'),
      true,
    ],
    ['a lost connection as the cause', new Error('rollback failed', { cause: withCode('', 'EPIPE') }), true],
    ['a unique violation', withCode('duplicate key value violates unique constraint', '23505'), false],
    ['a syntax error', withCode('syntax error at or near "selec"', '42601'), false],
    ['a plain error', new Error('boom'), false],
    ['not an error', 'ECONNREFUSED', false],
  ])('%s: %s', (_name, error, expected) => {
    expect(isConnectionLoss(error)).toBe(expected);
  });
});

describe('describeFailure', () => {
  it('gives the message, or the code of an error without one', () => {
    expect(describeFailure(new Error('connect ECONNREFUSED 127.0.0.1:5432'))).toBe(
      'database unreachable: connect ECONNREFUSED 127.0.0.1:5432',
    );
    expect(describeFailure(withCode('', 'ECONNREFUSED'))).toBe('database unreachable: ECONNREFUSED');
  });
});

describe('DatabaseHealth', () => {
  const logger = pino({ level: 'silent' });

  it('goes down with the ping’s reason, and wakes waiting writers when a ping answers again', async () => {
    let answering = false;
    const health = new DatabaseHealth(async () => {
      if (!answering) throw withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED');
    }, logger);
    expect(health.state).toBe('up');

    health.reportFailure(new Error('Connection terminated unexpectedly'));
    expect(await health.check()).toBe('down');
    expect(health.reason).toBe('database unreachable: connect ECONNREFUSED 127.0.0.1:5432');

    const waiting = health.whenUp(new AbortController().signal);
    answering = true;
    expect(await health.check()).toBe('up');
    expect(await waiting).toBe(true);
    expect(health.reason).toBeNull();
    health.stop();
  });

  it('ignores failures that say nothing about the connection', async () => {
    let pings = 0;
    const health = new DatabaseHealth(async () => {
      pings++;
    }, logger);
    health.reportFailure(new Error('duplicate key value violates unique constraint'));
    expect(pings).toBe(0);
    health.stop();
  });

  it('lets a writer give up waiting when its signal aborts', async () => {
    const health = new DatabaseHealth(() => Promise.reject(new Error('down')), logger);
    await health.check();
    const stopping = new AbortController();
    const waiting = health.whenUp(stopping.signal);
    stopping.abort();
    expect(await waiting).toBe(false);
    health.stop();
  });
});
