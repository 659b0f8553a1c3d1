import {
  applyDecorators,
  type ExecutionContext,
  HttpCode,
  RequestMapping,
  RequestMethod,
  SetMetadata,
} from '@nestjs/common';
import type { Reflector } from '@nestjs/core';
import {
  type ApiOperation,
  expressPath,
  type HttpMethod,
  requiredRole,
  type ResponseOf,
} from '../../protocol/api/operation.ts';
import { Public, RequireRole } from '../auth/operator-auth.guard.ts';

const REQUEST_METHODS: Record<HttpMethod, RequestMethod> = {
  get: RequestMethod.GET,
  post: RequestMethod.POST,
  put: RequestMethod.PUT,
  patch: RequestMethod.PATCH,
  delete: RequestMethod.DELETE,
};

const OPERATION_KEY = 'boardfleet:operation';

/** The row of the operations table the handler of a request serves, as {@link ApiRoute} recorded it. */
export const operationOf = (reflector: Reflector, context: ExecutionContext): ApiOperation | undefined =>
  reflector.get<ApiOperation | undefined>(OPERATION_KEY, context.getHandler());

type Handler<Op extends ApiOperation> = (...args: never[]) => ResponseOf<Op> | Promise<ResponseOf<Op>>;

/**
 * Routes a handler as its row of the operations table says: method, path, success status and who
 * may call (a role the guard checks, or public for routes that check another credential
 * themselves). The handler must return the row's answer type, or nothing when it writes a text,
 * binary or event-stream answer itself. The row stays on the handler, for what wraps every route
 * (the audit log).
 */
export function ApiRoute<Op extends ApiOperation>(operation: Op) {
  const role = requiredRole(operation.access);
  const decorate = applyDecorators(
    RequestMapping({ path: expressPath(operation.path), method: REQUEST_METHODS[operation.method] }),
    HttpCode(operation.status),
    role ? RequireRole(role) : Public(),
    SetMetadata(OPERATION_KEY, operation),
  );
  return <H extends Handler<Op>>(
    target: object,
    key: string | symbol,
    descriptor: TypedPropertyDescriptor<H>,
  ): void => {
    decorate(target, key, descriptor);
  };
}
