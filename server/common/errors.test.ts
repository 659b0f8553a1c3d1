import { Writable } from 'node:stream';
import type { ArgumentsHost } from '@nestjs/common';
import { BadRequestException, NotFoundException } from '@nestjs/common';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { BoardfleetError, ERROR_STATUS, type ErrorCode } from '../../protocol/errors.ts';
import { answerFor, BoardfleetErrorFilter } from './errors.ts';

/** The error body-parser raises for a body over its limit (http-errors' fields). */
const tooLarge = () =>
  Object.assign(new Error('request entity too large'), {
    type: 'entity.too.large',
    status: 413,
    expose: true,
    limit: 1024 * 1024,
    length: 2 * 1024 * 1024,
  });

/** Runs the filter with a real pino logger and returns the lines it wrote and what it answered. */
function filterWithLog(error: unknown, headersSent = false) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino(
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  const sent = { status: 0, body: undefined as unknown, destroyed: false };
  const response = {
    headersSent,
    status(code: number) {
      sent.status = code;
      return response;
    },
    json(body: unknown) {
      sent.body = body;
    },
    destroy() {
      sent.destroyed = true;
    },
  };
  const request = { method: 'POST', path: '/api/v1/devices' };
  const host = {
    switchToHttp: () => ({ getResponse: () => response, getRequest: () => request }),
  } as unknown as ArgumentsHost;
  new BoardfleetErrorFilter(logger).catch(error, host);
  return { sent, lines };
}

/** Runs the filter on one error and returns the status and body it answered with. */
function answer(error: unknown): { status: number; body: unknown } {
  const sent = { status: 0, body: undefined as unknown };
  const response = {
    status(code: number) {
      sent.status = code;
      return response;
    },
    json(body: unknown) {
      sent.body = body;
    },
  };
  const host = { switchToHttp: () => ({ getResponse: () => response }) } as unknown as ArgumentsHost;
  new BoardfleetErrorFilter().catch(error, host);
  return sent;
}

describe('the HTTP error filter', () => {
  it.each<[ErrorCode, number]>([
    ['invalid-request', 400],
    ['unauthorized', 401],
    ['forbidden', 403],
    ['not-found', 404],
    ['conflict', 409],
    ['unavailable', 503],
    ['board-unknown', 404],
    ['tool-missing', 503],
    ['build-failed', 500],
  ])('answers %s with %i, its code and its message', (code, status) => {
    expect(answer(new BoardfleetError(code, 'what happened'))).toEqual({
      status,
      body: { statusCode: status, code, message: 'what happened' },
    });
  });

  it('gives every code an error status', () => {
    for (const status of Object.values(ERROR_STATUS))
      expect([400, 401, 403, 404, 409, 413, 429, 500, 502, 503, 504]).toContain(status);
  });

  it('answers an unexpected error with 500, logs it once with its stack, and does not rethrow', () => {
    const { sent, lines } = filterWithLog(new TypeError('undefined is not a function'));
    expect(sent).toMatchObject({ status: 500, body: { code: 'internal', message: 'internal server error' } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 50,
      status: 500,
      path: '/api/v1/devices',
      msg: 'request failed',
    });
    expect((lines[0]?.err as { stack: string }).stack).toContain('TypeError: undefined is not a function');
  });

  it('answers a query that lost its database connection with 503, which a caller may try again', () => {
    const terminated = Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
    });
    const { sent, lines } = filterWithLog(terminated);
    expect(sent).toMatchObject({
      status: 503,
      body: { code: 'unavailable', message: 'the database is unavailable: try again shortly' },
    });
    expect(lines).toHaveLength(1);
  });

  it('answers a body over the limit with 413 naming the limit, and logs one warning', () => {
    const { sent, lines } = filterWithLog(tooLarge());
    expect(sent).toMatchObject({ status: 413, body: { statusCode: 413, code: 'body-too-large' } });
    expect((sent.body as { message: string }).message).toBe(
      "the request body (2097152 bytes) is over the server's limit of 1024 KiB (BOARDFLEET_HTTP_JSON_LIMIT_KIB)",
    );
    expect(lines).toEqual([expect.objectContaining({ level: 40, status: 413, code: 'body-too-large' })]);
  });

  it('answers an unreadable body with 400', () => {
    const aborted = Object.assign(new Error('request aborted'), { type: 'request.aborted', status: 400 });
    expect(answerFor(aborted)).toMatchObject({ status: 400, body: { code: 'invalid-request' }, log: 'warn' });
  });

  it('logs the 400 Nest gives malformed JSON, but not an unknown route', () => {
    expect(answerFor(new BadRequestException('Unexpected end of JSON input'))).toMatchObject({
      status: 400,
      log: 'warn',
    });
    expect(answerFor(new NotFoundException('Cannot GET /nope'))).toMatchObject({ status: 404, log: null });
  });

  it('cuts short a reply already under way instead of writing a second one', () => {
    const { sent, lines } = filterWithLog(new Error('disk gone mid-download'), true);
    expect(sent).toEqual({ status: 0, body: undefined, destroyed: true });
    expect(lines).toHaveLength(1);
  });
});
