import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
import { ArtifactService } from './artifacts/artifact.service.ts';
import { ArtifactsController } from './artifacts/artifacts.controller.ts';
import { AuditController } from './audit/audit.controller.ts';
import { AuditInterceptor } from './audit/audit.interceptor.ts';
import { AuditRepository } from './audit/audit.repository.ts';
import { OperatorAuthGuard } from './auth/operator-auth.guard.ts';
import { OperatorTokensController } from './auth/operator-tokens.controller.ts';
import { SignInController } from './auth/sign-in.controller.ts';
import { BuildsController } from './builds/builds.controller.ts';
import { BoardfleetErrorFilter } from './common/errors.ts';
import { ConfigVariablesModule } from './config-variables/config-variables.module.ts';
import { ConsolesModule } from './consoles/consoles.module.ts';
import { DeviceLogsModule } from './device-logs/device-logs.module.ts';
import { DeviceService } from './devices/device.service.ts';
import { DevicesController } from './devices/devices.controller.ts';
import { FleetController } from './devices/fleet.controller.ts';
import { FleetSummaryRepository } from './devices/fleet-summary.repository.ts';
import { ProvisioningController } from './devices/provisioning.controller.ts';
import { OpsController } from './metrics/ops.controller.ts';
import { ReleasesController } from './releases/releases.controller.ts';
import { ShellModule } from './shell/shell.module.ts';
import { RolloutService } from './rollouts/rollout.service.ts';
import { DeploymentHistoryRepository } from './rollouts/deployment-history.repository.ts';
import { DeviceDeploymentsController } from './rollouts/device-deployments.controller.ts';
import { RolloutsController } from './rollouts/rollouts.controller.ts';
import { DeviceCertificateController } from './tls/device-certificate.controller.ts';
import { TufModule } from './tuf/tuf.module.ts';
import { WebModule } from './web/web.module.ts';
import { WebhooksModule } from './webhooks/webhooks.module.ts';

/**
 * The HTTP side of the server. The long-lived parts (database, broker, MQTT session, metrics)
 * are built before Nest starts and handed in as values, so start-up order is explicit.
 */
@Module({})
export class AppModule {
  static forRoot(options: { logger: Logger; values: Provider[] }): DynamicModule {
    return {
      module: AppModule,
      imports: [
        LoggerModule.forRoot({
          pinoHttp: { logger: options.logger, autoLogging: false },
        }),
        ConsolesModule.forRoot(options.values),
        TufModule.forRoot(options.values),
        DeviceLogsModule.forRoot(options.values),
        ShellModule.forRoot(options.values),
        ConfigVariablesModule.forRoot(options.values),
        WebhooksModule.forRoot(options.values),
        // Last: its catch-all route (the dashboard, and 404 for unknown API paths) must not hide the others'.
        WebModule.forRoot(options.values),
      ],
      controllers: [
        DevicesController,
        ProvisioningController,
        DeviceCertificateController,
        OpsController,
        OperatorTokensController,
        SignInController,
        ArtifactsController,
        ReleasesController,
        RolloutsController,
        DeviceDeploymentsController,
        BuildsController,
        FleetController,
        AuditController,
      ],
      providers: [
        ...options.values,
        DeviceService,
        ArtifactService,
        RolloutService,
        FleetSummaryRepository,
        DeploymentHistoryRepository,
        AuditRepository,
        { provide: APP_GUARD, useClass: OperatorAuthGuard },
        // Global, so the audit log covers the routes of every module, ConsolesModule's and WebModule's too.
        { provide: APP_INTERCEPTOR, useClass: AuditInterceptor },
        { provide: APP_FILTER, useClass: BoardfleetErrorFilter },
      ],
    };
  }
}
