import {
  type ArgumentsHost,
  Catch,
  type ExceptionFilter,
  HttpException,
  Inject,
  Optional,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import pino, { type Logger } from 'pino';
import { BoardfleetError, ERROR_STATUS } from '../../protocol/errors.ts';
import { isConnectionLoss } from '../db/database-health.ts';

/** Nest injection token for the pino logger that failed and refused requests are written to. */
export const HTTP_LOGGER = Symbol('HTTP_LOGGER');

/** What the filter answers for an error, and whether the error deserves a log line. */
export interface ErrorAnswer {
  status: number;
  body: { statusCode: number; code: string; message: string };
  /** warn: the HTTP layer could not read the request; error: our own failure. */
  log: 'warn' | 'error' | null;
}

/** The fields body-parser (through http-errors) puts on the errors it raises for a request body. */
interface BodyReadError {
  type: string;
  status: number;
  message: string;
  /** For `entity.too.large`: the limit and, when the request declared it, the body's size. */
  limit?: number;
  length?: number;
}

/**
 * Decides the answer to an error; never throws. A BoardfleetError gets the status its code has in
 * ERROR_STATUS; a body the HTTP layer could not read (too large, not JSON) is the caller's 4xx and
 * is logged once, since it is a sign of a misbehaving client; a lost database connection is a 503
 * the caller may try again; anything else is our own 500.
 */
export function answerFor(error: unknown): ErrorAnswer {
  if (error instanceof BoardfleetError) return fromBoardfleetError(error, null);
  if (isBodyReadError(error)) return fromBoardfleetError(bodyReadError(error), 'warn');
  // A query that lost its database connection (an outage, a failover) may work when tried again.
  if (isConnectionLoss(error))
    return {
      ...fromBoardfleetError(
        new BoardfleetError('unavailable', 'the database is unavailable: try again shortly'),
        null,
      ),
      log: 'error',
    };
  if (error instanceof HttpException) {
    const status = error.getStatus();
    // Nest turns body-parser's syntax errors (malformed JSON) and bad URL encoding into a 400.
    const log = status === 400 ? 'warn' : null;
    return { status, body: { statusCode: status, code: 'http-error', message: error.message }, log };
  }
  return {
    status: 500,
    body: { statusCode: 500, code: 'internal', message: 'internal server error' },
    log: 'error',
  };
}

/** Turns errors into HTTP answers as {@link answerFor} decides, logging in one structured line. */
@Catch()
export class BoardfleetErrorFilter implements ExceptionFilter {
  constructor(@Optional() @Inject(HTTP_LOGGER) private readonly logger: Logger = pino()) {}

  catch(error: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const response = http.getResponse<Response>();
    const answer = answerFor(error);
    if (answer.log) {
      const request = http.getRequest<Request>();
      const fields = {
        method: request.method,
        path: request.path,
        status: answer.status,
        code: answer.body.code,
      };
      if (answer.log === 'error') this.logger.error({ ...fields, err: error }, 'request failed');
      else this.logger.warn({ ...fields, reason: answer.body.message }, 'request refused');
    }
    // A reply already under way cannot change its status: cut it short rather than pretend it finished.
    if (response.headersSent) {
      response.destroy();
      return;
    }
    response.status(answer.status).json(answer.body);
  }
}

function fromBoardfleetError(error: BoardfleetError, log: ErrorAnswer['log']): ErrorAnswer {
  const status = ERROR_STATUS[error.code];
  return { status, body: { statusCode: status, code: error.code, message: error.message }, log };
}

function isBodyReadError(error: unknown): error is BodyReadError {
  if (!(error instanceof Error)) return false;
  const { type, status } = error as Partial<BodyReadError>;
  return typeof type === 'string' && typeof status === 'number' && status >= 400 && status < 500;
}

function bodyReadError(error: BodyReadError): BoardfleetError {
  if (error.type === 'entity.too.large' && error.limit !== undefined) {
    const size = error.length === undefined ? '' : ` (${error.length} bytes)`;
    return new BoardfleetError(
      'body-too-large',
      `the request body${size} is over the server's limit of ${error.limit / 1024} KiB (BOARDFLEET_HTTP_JSON_LIMIT_KIB)`,
    );
  }
  return new BoardfleetError('invalid-request', `the request body could not be read: ${error.message}`);
}

export const notFound = (what: string) => new BoardfleetError('not-found', `${what} not found`);
export const invalidRequest = (message: string) => new BoardfleetError('invalid-request', message);
