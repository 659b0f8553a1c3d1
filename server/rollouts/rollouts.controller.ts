import { Body, Controller, Inject, Param, Req } from '@nestjs/common';
import { operations } from '../../protocol/api/operations.ts';
import {
  createRolloutBody,
  type Rollout,
  ROLLOUT_ACTIONS,
  type RolloutAction,
  type RolloutList,
  type RolloutPreview,
  type RolloutStatus,
} from '../../protocol/api/rollouts.ts';
import { emptyBody } from '../../protocol/api/shared.ts';
import type { AuthenticatedRequest } from '../auth/operator-auth.guard.ts';
import { ApiRoute } from '../common/api-route.ts';
import { invalidRequest } from '../common/errors.ts';
import { parseBody } from '../common/zod-body.ts';
import { RolloutService } from './rollout.service.ts';

const isAction = (action: string): action is RolloutAction =>
  (ROLLOUT_ACTIONS as readonly string[]).includes(action);

@Controller()
export class RolloutsController {
  constructor(@Inject(RolloutService) private readonly rollouts: RolloutService) {}

  @ApiRoute(operations.createRollout)
  async create(@Body() body: unknown): Promise<Rollout> {
    return this.rollouts.create(parseBody(createRolloutBody, body));
  }

  @ApiRoute(operations.previewRollout)
  async preview(@Body() body: unknown): Promise<RolloutPreview> {
    return this.rollouts.preview(parseBody(createRolloutBody, body));
  }

  @ApiRoute(operations.listRollouts)
  async list(): Promise<RolloutList> {
    return { rollouts: await this.rollouts.list() };
  }

  @ApiRoute(operations.getRollout)
  async status(@Param('id') id: string): Promise<RolloutStatus> {
    return this.rollouts.status(id);
  }

  @ApiRoute(operations.actOnRollout)
  async act(
    @Param('id') id: string,
    @Param('action') action: string,
    @Req() request: AuthenticatedRequest,
    @Body() body: unknown,
  ): Promise<RolloutStatus> {
    if (!isAction(action))
      throw invalidRequest(`unknown action ${action}: use ${ROLLOUT_ACTIONS.join(', ')}`);
    parseBody(emptyBody, body);
    return this.rollouts.act(id, action, request.operator?.name ?? 'an operator');
  }
}
