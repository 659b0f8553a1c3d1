import { Controller, Header, Inject } from '@nestjs/common';
import type { Healthz } from '../../protocol/api/fleet.ts';
import { operations } from '../../protocol/api/operations.ts';
import { ApiRoute } from '../common/api-route.ts';
import { ServerMetrics } from './metrics.ts';

/** Liveness and Prometheus metrics, for whatever watches the server. */
@Controller()
export class OpsController {
  constructor(@Inject(ServerMetrics) private readonly metrics: ServerMetrics) {}

  @ApiRoute(operations.healthz)
  healthz(): Healthz {
    return { status: 'ok' };
  }

  @ApiRoute(operations.metrics)
  @Header('Content-Type', 'text/plain; version=0.0.4')
  async metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
