import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { ConsoleRepository } from './console.repository.ts';
import { ConsoleService } from './console.service.ts';
import { ConsolesController } from './consoles.controller.ts';

/** VM consoles devices upload per artifact version, for operators to read back. */
@Module({})
export class ConsolesModule {
  /** `values` are the server's long-lived parts (database, clock, device repository and authenticator). */
  static forRoot(values: Provider[]): DynamicModule {
    return {
      module: ConsolesModule,
      controllers: [ConsolesController],
      providers: [...values, ConsoleRepository, ConsoleService],
    };
  }
}
