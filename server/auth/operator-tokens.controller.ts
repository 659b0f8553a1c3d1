import { Body, Controller, Inject } from '@nestjs/common';
import { operations } from '../../protocol/api/operations.ts';
import { type CreatedOperatorToken, createOperatorTokenBody } from '../../protocol/api/session.ts';
import { ApiRoute } from '../common/api-route.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { parseBody } from '../common/zod-body.ts';
import { OperatorTokenRepository } from './operator-token.repository.ts';

/** Operator API tokens: admins hand them out, each with a role. */
@Controller()
export class OperatorTokensController {
  constructor(
    @Inject(OperatorTokenRepository) private readonly tokens: OperatorTokenRepository,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  @ApiRoute(operations.createOperatorToken)
  async createToken(@Body() body: unknown): Promise<CreatedOperatorToken> {
    const { name, role } = parseBody(createOperatorTokenBody, body);
    return this.tokens.create(name, role, this.clock.now());
  }
}
