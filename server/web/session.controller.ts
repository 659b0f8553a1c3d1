import { Controller, Req } from '@nestjs/common';
import { operations } from '../../protocol/api/operations.ts';
import type { Me } from '../../protocol/api/session.ts';
import type { AuthenticatedRequest } from '../auth/operator-auth.guard.ts';
import { ApiRoute } from '../common/api-route.ts';

@Controller()
export class SessionController {
  @ApiRoute(operations.getSession)
  me(@Req() request: AuthenticatedRequest): Me {
    // The guard has authenticated the token before any route runs.
    const operator = request.operator as NonNullable<AuthenticatedRequest['operator']>;
    return { name: operator.name, role: operator.role };
  }
}
