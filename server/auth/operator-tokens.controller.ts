import { Body, Controller, Inject, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { CLOCK, type Clock } from '../common/clock.ts';
import { parseBody } from '../common/zod-body.ts';
import { RequireRole } from './operator-auth.guard.ts';
import { OperatorTokenRepository } from './operator-token.repository.ts';

const createOperatorTokenBody = z.strictObject({
  name: z.string().min(1).max(128),
  role: z.enum(['admin', 'operator', 'viewer']),
});

/** Operator API tokens: admins hand them out, each with a role. */
@ApiTags('operations')
@Controller('api/v1/operator-tokens')
export class OperatorTokensController {
  constructor(
    @Inject(OperatorTokenRepository) private readonly tokens: OperatorTokenRepository,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  @Post()
  @RequireRole('admin')
  @ApiBearerAuth()
  @ApiOperation({ summary: 'Create an operator API token with a role (admin, operator, viewer)' })
  @ApiBody({ schema: z.toJSONSchema(createOperatorTokenBody) as object })
  createToken(@Body() body: unknown) {
    const { name, role } = parseBody(createOperatorTokenBody, body);
    return this.tokens.create(name, role, this.clock.now());
  }
}
