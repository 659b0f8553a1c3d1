import { Controller, Get, Inject } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import { FleetSummaryRepository } from './fleet-summary.repository.ts';

@ApiTags('fleet')
@ApiBearerAuth()
@Controller('api/v1/fleet')
export class FleetController {
  constructor(@Inject(FleetSummaryRepository) private readonly fleet: FleetSummaryRepository) {}

  @Get('summary')
  @ApiOperation({
    summary:
      'The fleet at a glance over devices not revoked: total, online, offline, counts by board (reported, else ' +
      'registered; "unknown" when neither) and by running version ("none" when the device reports none). ' +
      'Failing health: online devices whose latest heartbeat has under 10 % disk or memory free or a CPU at ' +
      '80 °C or more, or with an attached board that does not answer Firmata; failingDevices lists the first 20 ' +
      'by name with the reason.',
  })
  summary() {
    return this.fleet.summary();
  }
}
