import { Inject, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import {
  CSRF_HEADER,
  OPERATOR_ROLES,
  type OperatorRole,
  SESSION_COOKIE,
} from '../../protocol/api/session.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { OperatorSessionRepository } from './operator-session.repository.ts';
import { type Operator, OperatorTokenRepository } from './operator-token.repository.ts';

export function bearerToken(request: Request): string | null {
  const header = request.headers.authorization;
  const match = header?.match(/^Bearer\s+(\S+)$/i);
  return match?.[1] ?? null;
}

/** The value of one cookie of the request, if it has it. */
export function cookie(request: Request, name: string): string | null {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const separator = part.indexOf('=');
    if (separator > 0 && part.slice(0, separator).trim() === name) return part.slice(separator + 1).trim();
  }
  return null;
}

const isRead = (request: Request) => request.method === 'GET' || request.method === 'HEAD';

/**
 * Who an operator request comes from: the CLI and scripts send their token as a bearer token, the
 * dashboard its session cookie. Both are checked against the database on every request, so a
 * revoked or expired token stops at once.
 */
@Injectable()
export class OperatorAuthenticator {
  constructor(
    @Inject(OperatorTokenRepository) readonly tokens: OperatorTokenRepository,
    @Inject(OperatorSessionRepository) readonly sessions: OperatorSessionRepository,
    @Inject(CLOCK) readonly clock: Clock,
  ) {}

  /**
   * The operator behind the request, if it has at least `required` (default: `viewer` to read,
   * `operator` to change); otherwise throws the 401 or 403 to answer. A bearer token wins over a
   * cookie; a write authenticated by the cookie needs the CSRF header.
   */
  async authenticate(request: Request, required?: OperatorRole): Promise<Operator> {
    const operator = await this.identify(request);
    const role = required ?? (isRead(request) ? 'viewer' : 'operator');
    if (OPERATOR_ROLES.indexOf(operator.role) < OPERATOR_ROLES.indexOf(role)) {
      throw new BoardfleetError('forbidden', `this needs the ${role} role; the token has ${operator.role}`);
    }
    return operator;
  }

  /** The operator behind the request's bearer token or session cookie, whatever its role. */
  async identify(request: Request): Promise<Operator> {
    const now = this.clock.now();
    const token = bearerToken(request);
    if (token) {
      const operator = await this.tokens.findByToken(token, now);
      if (!operator)
        throw new BoardfleetError('unauthorized', 'the operator token is unknown, revoked or expired');
      return operator;
    }
    const session = cookie(request, SESSION_COOKIE);
    if (!session) {
      throw new BoardfleetError(
        'unauthorized',
        'an operator token is required (Authorization: Bearer …), or sign in to the dashboard',
      );
    }
    const operator = await this.sessions.findOperator(session, now);
    if (!operator)
      throw new BoardfleetError('unauthorized', 'the dashboard session has ended: sign in again');
    if (!isRead(request)) requireCsrfHeader(request);
    return operator;
  }
}

/**
 * A browser sends the SameSite=Strict cookie only from this server's own pages; the header is the
 * second lock: a cross-site form cannot set it, and a cross-site script may not without CORS.
 */
export function requireCsrfHeader(request: Request): void {
  if (!request.headers[CSRF_HEADER]) {
    throw new BoardfleetError(
      'forbidden',
      `a dashboard request that changes something needs the ${CSRF_HEADER} header`,
    );
  }
}
