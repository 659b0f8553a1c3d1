import { Body, Controller, Get, Header, Inject, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiExcludeEndpoint, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { Public, RequireRole } from '../auth/operator-auth.guard.ts';
import { OperatorTokenRepository } from '../auth/operator-token.repository.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { parseBody } from '../common/zod-body.ts';
import { ServerMetrics } from './metrics.ts';

const createOperatorTokenBody = z.strictObject({
  name: z.string().min(1).max(128),
  role: z.enum(['admin', 'operator', 'viewer']),
});

@ApiTags('operations')
@Controller()
export class OpsController {
  constructor(
    @Inject(ServerMetrics) private readonly metrics: ServerMetrics,
    @Inject(OperatorTokenRepository) private readonly tokens: OperatorTokenRepository,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  @Public()
  @Get('healthz')
  @ApiOperation({ summary: 'Liveness: 200 while the server runs' })
  healthz() {
    return { status: 'ok' };
  }

  @Public()
  @Get('metrics')
  @ApiExcludeEndpoint()
  @Header('Content-Type', 'text/plain; version=0.0.4')
  metricsText() {
    return this.metrics.registry.metrics();
  }

  @Post('api/v1/operator-tokens')
  @RequireRole('admin')
  @ApiBearerAuth()
  @ApiOperation({ summary: 'Create an operator API token with a role (admin, operator, viewer)' })
  @ApiBody({ schema: z.toJSONSchema(createOperatorTokenBody) as object })
  createToken(@Body() body: unknown) {
    const { name, role } = parseBody(createOperatorTokenBody, body);
    return this.tokens.create(name, role, this.clock.now());
  }
}
