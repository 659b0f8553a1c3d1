import { type CanActivate, type ExecutionContext, Inject, Injectable, SetMetadata } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { OPERATOR_ROLES, type OperatorRole } from '../../protocol/api/session.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { type Operator, OperatorTokenRepository } from './operator-token.repository.ts';

const ROLE_KEY = 'boardfleet:required-role';
const PUBLIC_KEY = 'boardfleet:public';

/** The least role a route needs; routes without it need `viewer` to read and `operator` to change. */
export const RequireRole = (role: OperatorRole) => SetMetadata(ROLE_KEY, role);
/** Routes that authenticate by other means (health checks, metrics, device provisioning). */
export const Public = () => SetMetadata(PUBLIC_KEY, true);

export type AuthenticatedRequest = Request & { operator?: Operator };

export function bearerToken(request: Request): string | null {
  const header = request.headers.authorization;
  const match = header?.match(/^Bearer\s+(\S+)$/i);
  return match?.[1] ?? null;
}

@Injectable()
export class OperatorAuthGuard implements CanActivate {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(OperatorTokenRepository) private readonly tokens: OperatorTokenRepository,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets)) return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const token = bearerToken(request);
    if (!token)
      throw new BoardfleetError('unauthorized', 'an operator token is required (Authorization: Bearer …)');
    const operator = await this.tokens.findByToken(token);
    if (!operator) throw new BoardfleetError('unauthorized', 'the operator token is unknown or revoked');
    const required =
      this.reflector.getAllAndOverride<OperatorRole>(ROLE_KEY, targets) ??
      (request.method === 'GET' || request.method === 'HEAD' ? 'viewer' : 'operator');
    if (OPERATOR_ROLES.indexOf(operator.role) < OPERATOR_ROLES.indexOf(required)) {
      throw new BoardfleetError(
        'forbidden',
        `this needs the ${required} role; the token has ${operator.role}`,
      );
    }
    request.operator = operator;
    return true;
  }
}
