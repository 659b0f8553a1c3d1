import type { ArgumentsHost } from '@nestjs/common';
import { describe, expect, it } from 'vitest';
import { BoardfleetError, ERROR_STATUS, type ErrorCode } from '../../protocol/errors.ts';
import { BoardfleetErrorFilter } from './errors.ts';

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
      expect([400, 401, 403, 404, 409, 500, 502, 503, 504]).toContain(status);
  });
});
