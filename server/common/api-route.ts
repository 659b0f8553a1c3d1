import { applyDecorators, HttpCode, RequestMapping, RequestMethod } from '@nestjs/common';
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

type Handler<Op extends ApiOperation> = (...args: never[]) => ResponseOf<Op> | Promise<ResponseOf<Op>>;

/**
 * Routes a handler as its row of the operations table says: method, path, success status and who
 * may call (a role the guard checks, or public for routes that check another credential
 * themselves). The handler must return the row's answer type, or nothing when it writes a text,
 * binary or event-stream answer itself.
 */
export function ApiRoute<Op extends ApiOperation>(operation: Op) {
  const role = requiredRole(operation.access);
  const decorate = applyDecorators(
    RequestMapping({ path: expressPath(operation.path), method: REQUEST_METHODS[operation.method] }),
    HttpCode(operation.status),
    role ? RequireRole(role) : Public(),
  );
  return <H extends Handler<Op>>(
    target: object,
    key: string | symbol,
    descriptor: TypedPropertyDescriptor<H>,
  ): void => {
    decorate(target, key, descriptor);
  };
}
