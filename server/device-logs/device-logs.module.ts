import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { DeviceLogsController } from './device-logs.controller.ts';

/** Live device logs: `GET /api/v1/devices/{id}/logs`, relayed by the `LogRelay` the server built. */
@Module({})
export class DeviceLogsModule {
  /** `values` are the server's long-lived parts (the log relay, the device repository, the clock). */
  static forRoot(values: Provider[]): DynamicModule {
    return { module: DeviceLogsModule, controllers: [DeviceLogsController], providers: [...values] };
  }
}
