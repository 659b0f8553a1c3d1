import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException } from '@nestjs/common';
import type { Response } from 'express';
import { BoardfleetError, ERROR_STATUS } from '../../protocol/errors.ts';

/** Turns errors into HTTP answers: a BoardfleetError gets the status its code has in ERROR_STATUS. */
@Catch()
export class BoardfleetErrorFilter implements ExceptionFilter {
  catch(error: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    if (error instanceof BoardfleetError) {
      const status = ERROR_STATUS[error.code];
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
