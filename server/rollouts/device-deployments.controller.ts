import { Controller, Inject, Param } from '@nestjs/common';
import type { DeviceDeployments } from '../../protocol/api/devices.ts';
import { operations } from '../../protocol/api/operations.ts';
import { ApiRoute } from '../common/api-route.ts';
import { DeviceService } from '../devices/device.service.ts';
import { DeploymentHistoryRepository } from './deployment-history.repository.ts';

/** A device's deployment history: served under the device's path, read from the rollout tables. */
@Controller()
export class DeviceDeploymentsController {
  constructor(
    @Inject(DeviceService) private readonly devices: DeviceService,
    @Inject(DeploymentHistoryRepository) private readonly history: DeploymentHistoryRepository,
  ) {}

  @ApiRoute(operations.listDeviceDeployments)
  async deployments(@Param('id') id: string): Promise<DeviceDeployments> {
    await this.devices.getOrThrow(id);
    return { deviceId: id, deployments: await this.history.forDevice(id) };
  }
}
