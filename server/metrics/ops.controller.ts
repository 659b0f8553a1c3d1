import { Controller, Get, Header, Inject } from '@nestjs/common';
import { ApiExcludeEndpoint, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Public } from '../auth/operator-auth.guard.ts';
import { ServerMetrics } from './metrics.ts';

/** Liveness and Prometheus metrics, for whatever watches the server. */
@ApiTags('operations')
@Controller()
export class OpsController {
  constructor(@Inject(ServerMetrics) private readonly metrics: ServerMetrics) {}

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
}
