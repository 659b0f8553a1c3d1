import {
  type CanActivate,
  type ExecutionContext,
  Inject,
  Injectable,
  Optional,
  SetMetadata,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request, RequestHandler } from 'express';
import type { OperatorRole } from '../../protocol/api/session.ts';
import { OperatorAuthenticator } from './operator-authenticator.ts';
import type { Operator } from './operator-token.repository.ts';

const ROLE_KEY = 'boardfleet:required-role';
const PUBLIC_KEY = 'boardfleet:public';
const CLOSABLE_KEY = 'boardfleet:closable';

/** The least role a route needs; routes without it need `viewer` to read and `operator` to change. */
export const RequireRole = (role: OperatorRole) => SetMetadata(ROLE_KEY, role);
/** Routes that authenticate by other means (health checks, metrics, device provisioning). */
export const Public = () => SetMetadata(PUBLIC_KEY, true);

/** Public routes that the configuration may close to callers without an operator token. */
export type ClosableRoute = 'metrics';
/** Nest injection token: the set of {@link ClosableRoute}s the configuration closed. */
export const CLOSED_ROUTES = Symbol('CLOSED_ROUTES');
/** Marks a public route that needs an operator token when the configuration closes it. */
export const Closable = (route: ClosableRoute) => SetMetadata(CLOSABLE_KEY, route);

export type AuthenticatedRequest = Request & { operator?: Operator };

/** The same check as the guard, for routes mounted outside Nest's router (the OpenAPI UI). */
export function operatorOnly(auth: OperatorAuthenticator): RequestHandler {
  return (request, _response, next) => {
    auth.authenticate(request).then((operator) => {
      (request as AuthenticatedRequest).operator = operator;
      next();
    }, next);
  };
}

@Injectable()
export class OperatorAuthGuard implements CanActivate {
  constructor(
    @Inject(Reflector) private readonly reflector: Reflector,
    @Inject(OperatorAuthenticator) private readonly auth: OperatorAuthenticator,
    @Optional() @Inject(CLOSED_ROUTES) private readonly closed: ReadonlySet<ClosableRoute> = new Set(),
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    const closable = this.reflector.getAllAndOverride<ClosableRoute | undefined>(CLOSABLE_KEY, targets);
    const isPublic =
      this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets) &&
      !(closable && this.closed.has(closable));
    if (isPublic) return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const required = this.reflector.getAllAndOverride<OperatorRole | undefined>(ROLE_KEY, targets);
    request.operator = await this.auth.authenticate(request, required);
    return true;
  }
}
