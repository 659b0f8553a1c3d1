import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { ConfigVariablesController } from './config-variables.controller.ts';

/**
 * Configuration variables' REST routes. The service is one of the server's long-lived parts
 * (built by `configVariablesService`, handed in with `values`): the rollout engine and the
 * devices and shell modules use it too.
 */
@Module({})
export class ConfigVariablesModule {
  static forRoot(values: Provider[]): DynamicModule {
    return {
      module: ConfigVariablesModule,
      controllers: [ConfigVariablesController],
      providers: [...values],
    };
  }
}
