import {
  type CallHandler,
  type ExecutionContext,
  Inject,
  Injectable,
  type NestInterceptor,
  Optional,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import pino, { type Logger } from 'pino';
import { catchError, concatMap, from, type Observable, throwError } from 'rxjs';
import type { AuthenticatedRequest } from '../auth/operator-auth.guard.ts';
import { bearerToken } from '../auth/operator-authenticator.ts';
import type { Operator } from '../auth/operator-token.repository.ts';
import { operationOf } from '../common/api-route.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { answerFor, HTTP_LOGGER } from '../common/errors.ts';
import { DatabaseHealth } from '../db/database-health.ts';
import { AuditRepository } from './audit.repository.ts';
import { auditEntry, type AuditRule, auditRuleFor } from './audit-rules.ts';

/** Express gives a wildcard parameter as its list of segments; no audited route has one. */
const pathParameters = (request: AuthenticatedRequest): Record<string, string> =>
  Object.fromEntries(
    Object.entries(request.params).map(([name, value]) => [
      name,
      Array.isArray(value) ? value.join('/') : value,
    ]),
  );

/**
 * Writes the audit log around every route, so no controller has to remember to: a call of an
 * operation the rules audit gets its entry once its outcome is known and before its answer is
 * sent, so whoever has seen the answer finds the entry. A failure is recorded with the message
 * the caller gets. Requests the guard refuses (no or a wrong token, too low a role) never reach
 * an action and are not recorded.
 */
@Injectable()
export class AuditInterceptor implements NestInterceptor {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(AuditRepository) private readonly audit: AuditRepository,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(DatabaseHealth) private readonly database: DatabaseHealth,
    @Optional() @Inject(HTTP_LOGGER) private readonly logger: Logger = pino(),
  ) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const operation = context.getType() === 'http' ? operationOf(this.reflector, context) : undefined;
    const rule = operation ? auditRuleFor(operation) : null;
    if (!rule) return next.handle();
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    return next.handle().pipe(
      concatMap(async (result: unknown) => {
        await this.record(rule, request, result, null);
        return result;
      }),
      catchError((error: unknown) =>
        from(this.record(rule, request, undefined, answerFor(error).body.message)).pipe(
          concatMap(() => throwError(() => error)),
        ),
      ),
    );
  }

  /**
   * Never throws: the action has happened (or failed) either way, and its answer must not change
   * because the log could not be written. An entry that could not be written is logged instead,
   * at once while the database is known to be down: the caller then gets its 503 without waiting
   * for a write that cannot work.
   */
  private async record(
    rule: AuditRule,
    request: AuthenticatedRequest,
    result: unknown,
    reason: string | null,
  ): Promise<void> {
    // Every audited operation needs an operator role (audit-rules.test.ts): the guard has identified the caller.
    const operator = request.operator as Operator;
    const entry = auditEntry(
      rule,
      { params: pathParameters(request), query: request.query, body: request.body as unknown, result },
      { name: operator.name, tokenId: operator.tokenId, via: bearerToken(request) ? 'token' : 'session' },
      reason,
      this.clock.now(),
    );
    if (this.database.state !== 'up') {
      this.logger.error(
        { entry, reason: this.database.reason },
        'audit entry not written: the database is down',
      );
      return;
    }
    await this.audit
      .append(entry)
      .catch((error: unknown) => this.logger.error({ err: error, entry }, 'writing the audit log failed'));
  }
}
