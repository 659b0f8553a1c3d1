import { Body, Controller, Get, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import type { AuthenticatedRequest } from '../auth/operator-auth.guard.ts';
import { invalidRequest } from '../common/errors.ts';
import { parseBody } from '../common/zod-body.ts';
import { createRolloutBody } from './rollout.dto.ts';
import { RolloutService } from './rollout.service.ts';

const ACTIONS = ['pause', 'resume', 'abort', 'approve'] as const;

@ApiTags('rollouts')
@ApiBearerAuth()
@Controller('api/v1/rollouts')
export class RolloutsController {
  constructor(@Inject(RolloutService) private readonly rollouts: RolloutService) {}

  @Post()
  @ApiOperation({ summary: 'Start a staged rollout of a release to a target, in waves' })
  @ApiBody({ schema: z.toJSONSchema(createRolloutBody, { io: 'input' }) as object })
  create(@Body() body: unknown) {
    return this.rollouts.create(parseBody(createRolloutBody, body));
  }

  @Post('preview')
  @HttpCode(200)
  @ApiOperation({ summary: 'How many devices each wave would get, without starting anything' })
  preview(@Body() body: unknown) {
    return this.rollouts.preview(parseBody(createRolloutBody, body));
  }

  @Get()
  @ApiOperation({ summary: 'List rollouts, newest first' })
  async list() {
    return { rollouts: await this.rollouts.list() };
  }

  @Get(':id')
  @ApiOperation({
    summary: 'Live status: waves with counts, devices with state, progress and failure reason, history',
  })
  status(@Param('id') id: string) {
    return this.rollouts.status(id);
  }

  @Post(':id/:action')
  @HttpCode(200)
  @ApiOperation({ summary: 'pause, resume, abort, or approve the next wave' })
  act(@Param('id') id: string, @Param('action') action: string, @Req() request: AuthenticatedRequest) {
    if (!(ACTIONS as readonly string[]).includes(action))
      throw invalidRequest(`unknown action ${action}: use ${ACTIONS.join(', ')}`);
    return this.rollouts.act(id, action as (typeof ACTIONS)[number], request.operator?.name ?? 'an operator');
  }
}
