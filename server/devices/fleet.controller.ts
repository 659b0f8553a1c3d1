import { Controller, Inject } from '@nestjs/common';
import type { FleetSummary } from '../../protocol/api/fleet.ts';
import { operations } from '../../protocol/api/operations.ts';
import { ApiRoute } from '../common/api-route.ts';
import { FleetSummaryRepository } from './fleet-summary.repository.ts';

@Controller()
export class FleetController {
  constructor(@Inject(FleetSummaryRepository) private readonly fleet: FleetSummaryRepository) {}

  @ApiRoute(operations.getFleetSummary)
  async summary(): Promise<FleetSummary> {
    return this.fleet.summary();
  }
}
