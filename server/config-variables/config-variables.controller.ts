import { Body, Controller, Inject, Param, Query, Req } from '@nestjs/common';
import {
  type ConfigVariable,
  type ConfigVariableList,
  configVariableQuery,
  type DeviceConfig,
  setConfigVariableBody,
} from '../../protocol/api/config-variables.ts';
import { operations } from '../../protocol/api/operations.ts';
import type { AuthenticatedRequest } from '../auth/operator-auth.guard.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { ConfigVariablesService } from './config-variables.service.ts';

@Controller()
export class ConfigVariablesController {
  constructor(@Inject(ConfigVariablesService) private readonly config: ConfigVariablesService) {}

  @ApiRoute(operations.listConfigVariables)
  async list(@Query() query: unknown): Promise<ConfigVariableList> {
    return { variables: await this.config.list(parseBody(configVariableQuery, query)) };
  }

  @ApiRoute(operations.setConfigVariable)
  async set(
    @Param('name') name: string,
    @Body() body: unknown,
    @Req() request: AuthenticatedRequest,
  ): Promise<ConfigVariable> {
    return this.config.set(
      name,
      parseBody(setConfigVariableBody, body),
      request.operator?.name ?? 'an operator',
    );
  }

  @ApiRoute(operations.unsetConfigVariable)
  async unset(@Param('name') name: string, @Query() query: unknown): Promise<ConfigVariable> {
    return this.config.unset(name, parseBody(configVariableQuery, query));
  }

  @ApiRoute(operations.getDeviceConfig)
  async device(@Param('id') id: string): Promise<DeviceConfig> {
    return this.config.deviceConfig(id);
  }
}
