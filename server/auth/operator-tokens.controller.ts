import { Body, Controller, Inject, Param } from '@nestjs/common';
import { operations } from '../../protocol/api/operations.ts';
import {
  type CreatedOperatorToken,
  createOperatorTokenBody,
  type TokenInfo,
  type TokenList,
} from '../../protocol/api/session.ts';
import { parseDuration } from '../../protocol/api/token-expiry.ts';
import { ApiRoute } from '../common/api-route.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { notFound } from '../common/errors.ts';
import { parseBody } from '../common/zod-body.ts';
import { ProvisioningTokenRepository } from '../devices/provisioning-token.repository.ts';
import { OperatorTokenRepository } from './operator-token.repository.ts';

/** Operator API tokens (admins hand them out, each with a role), and the list of every token of both kinds. */
@Controller()
export class OperatorTokensController {
  constructor(
    @Inject(OperatorTokenRepository) private readonly tokens: OperatorTokenRepository,
    @Inject(ProvisioningTokenRepository) private readonly provisioningTokens: ProvisioningTokenRepository,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  @ApiRoute(operations.createOperatorToken)
  async createToken(@Body() body: unknown): Promise<CreatedOperatorToken> {
    const { name, role, expiresIn } = parseBody(createOperatorTokenBody, body);
    const now = this.clock.now();
    return this.tokens.create(name, role, expiresIn ? now + (parseDuration(expiresIn) as number) : null, now);
  }

  @ApiRoute(operations.listTokens)
  async list(): Promise<TokenList> {
    const now = this.clock.now();
    const [operator, provisioning] = await Promise.all([
      this.tokens.list(now),
      this.provisioningTokens.list(now),
    ]);
    return { tokens: [...operator, ...provisioning].sort((a, b) => a.createdAt - b.createdAt) };
  }

  @ApiRoute(operations.revokeToken)
  async revoke(@Param('id') id: string): Promise<TokenInfo> {
    const now = this.clock.now();
    const revoked = (await this.tokens.revoke(id, now)) ?? (await this.provisioningTokens.revoke(id, now));
    if (!revoked) throw notFound(`token ${id}`);
    return revoked;
  }
}
