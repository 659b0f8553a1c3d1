import { Controller, Get, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { AuthenticatedRequest } from '../auth/operator-auth.guard.ts';

@ApiTags('session')
@ApiBearerAuth()
@Controller('api/v1/me')
export class SessionController {
  @Get()
  @ApiOperation({
    summary: "Whose token this is: its name and role (the dashboard's sign-in checks a token with it)",
  })
  me(@Req() request: AuthenticatedRequest) {
    // The guard has authenticated the token before any route runs.
    const operator = request.operator as NonNullable<AuthenticatedRequest['operator']>;
    return { name: operator.name, role: operator.role };
  }
}
