import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { TufController } from './tuf.controller.ts';

/** The fleet's TUF repository: its public metadata files and the operators' key routes. */
@Module({})
export class TufModule {
  /** `values` are the server's long-lived parts (the TufService, devices, releases). */
  static forRoot(values: Provider[]): DynamicModule {
    return {
      module: TufModule,
      controllers: [TufController],
      providers: [...values],
    };
  }
}
