import { Controller, Header, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import type { Healthz } from '../../protocol/api/fleet.ts';
import { operations } from '../../protocol/api/operations.ts';
import { Closable } from '../auth/operator-auth.guard.ts';
import { ServerMqttClient } from '../broker/server-mqtt-client.ts';
import { ApiRoute } from '../common/api-route.ts';
import { DatabaseHealth } from '../db/database-health.ts';
import { ServerMetrics } from './metrics.ts';

/** Liveness and Prometheus metrics, for whatever watches the server. */
@Controller()
export class OpsController {
  constructor(
    @Inject(ServerMetrics) private readonly metrics: ServerMetrics,
    @Inject(DatabaseHealth) private readonly database: DatabaseHealth,
    @Inject(ServerMqttClient) private readonly mqtt: ServerMqttClient,
  ) {}

  /** 503 while a dependency is down, so a load balancer or orchestrator sees the server degraded. */
  @ApiRoute(operations.healthz)
  healthz(@Res({ passthrough: true }) response: Response): Healthz {
    const database = { state: this.database.state, reason: this.database.reason };
    const degraded = database.state !== 'up';
    if (degraded) response.status(503);
    return { status: degraded ? 'degraded' : 'ok', database, mqtt: this.mqtt.health() };
  }

  /** Public unless BOARDFLEET_METRICS_PUBLIC=0 closes it to callers without an operator token. */
  @ApiRoute(operations.metrics)
  @Closable('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4')
  async metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
