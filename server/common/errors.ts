import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException } from '@nestjs/common';
import type { Response } from 'express';
import { BoardfleetError } from '../../protocol/errors.ts';

/** The one place error codes become HTTP statuses. */
const STATUS_BY_CODE: Record<string, number> = {
  'invalid-request': 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  conflict: 409,
  unavailable: 503,
};

@Catch()
export class BoardfleetErrorFilter implements ExceptionFilter {
  catch(error: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    if (error instanceof BoardfleetError) {
      const status = STATUS_BY_CODE[error.code] ?? 500;
      response.status(status).json({ statusCode: status, code: error.code, message: error.message });
      return;
    }
    if (error instanceof HttpException) {
      const status = error.getStatus();
      response.status(status).json({ statusCode: status, code: 'http-error', message: error.message });
      return;
    }
    response.status(500).json({ statusCode: 500, code: 'internal', message: 'internal server error' });
    throw error;
  }
}

export const notFound = (what: string) => new BoardfleetError('not-found', `${what} not found`);
export const invalidRequest = (message: string) => new BoardfleetError('invalid-request', message);
