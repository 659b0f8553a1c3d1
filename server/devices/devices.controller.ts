import { Body, Controller, Inject, Param, Query } from '@nestjs/common';
import {
  type CreatedDevice,
  createDeviceBody,
  type Device,
  type DeviceDetails,
  type DeviceEventHistory,
  type DevicePage,
  type HealthHistory,
  listDevicesQuery,
  type PresenceHistory,
  sendCommandBody,
  type SentCommand,
  timeRangeQuery,
  updateDeviceBody,
} from '../../protocol/api/devices.ts';
import { operations } from '../../protocol/api/operations.ts';
import { emptyBody } from '../../protocol/api/shared.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { TelemetryRepository } from '../telemetry/telemetry.repository.ts';
import { DeviceService } from './device.service.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

function timeRange(query: unknown) {
  const { from, to, limit } = parseBody(timeRangeQuery, query);
  const end = to ?? Date.now();
  return { from: from ?? end - DAY_MS, to: end, limit };
}

@Controller()
export class DevicesController {
  constructor(
    @Inject(DeviceService) private readonly devices: DeviceService,
    @Inject(TelemetryRepository) private readonly telemetry: TelemetryRepository,
  ) {}

  @ApiRoute(operations.createDevice)
  async create(@Body() body: unknown): Promise<CreatedDevice> {
    const { allowDuplicate, ...device } = parseBody(createDeviceBody, body);
    return this.devices.create({ ...device, onDuplicateName: allowDuplicate ? 'allow' : 'refuse' });
  }

  @ApiRoute(operations.listDevices)
  async list(@Query() query: unknown): Promise<DevicePage> {
    const { q, ...filter } = parseBody(listDevicesQuery, query);
    const { devices, total } = await this.devices.list({ ...filter, ...(q ? { search: q } : {}) });
    return { devices, total, limit: filter.limit, offset: filter.offset };
  }

  @ApiRoute(operations.getDevice)
  async get(@Param('id') id: string): Promise<DeviceDetails> {
    return this.devices.details(id);
  }

  @ApiRoute(operations.updateDevice)
  async update(@Param('id') id: string, @Body() body: unknown): Promise<Device> {
    return this.devices.update(id, parseBody(updateDeviceBody, body));
  }

  @ApiRoute(operations.deleteDevice)
  async delete(@Param('id') id: string): Promise<Device> {
    return this.devices.delete(id);
  }

  @ApiRoute(operations.revokeDevice)
  async revoke(@Param('id') id: string, @Body() body: unknown): Promise<Device> {
    parseBody(emptyBody, body);
    return this.devices.revoke(id);
  }

  @ApiRoute(operations.sendCommand)
  async command(@Param('id') id: string, @Body() body: unknown): Promise<SentCommand> {
    const { type, args } = parseBody(sendCommandBody, body);
    return this.devices.sendCommand(id, type, args);
  }

  @ApiRoute(operations.getDeviceHealth)
  async health(@Param('id') id: string, @Query() query: unknown): Promise<HealthHistory> {
    await this.devices.getOrThrow(id);
    const { from, to, limit } = timeRange(query);
    return { deviceId: id, from, to, samples: await this.telemetry.healthHistory(id, from, to, limit) };
  }

  @ApiRoute(operations.getDevicePresence)
  async presence(@Param('id') id: string, @Query() query: unknown): Promise<PresenceHistory> {
    await this.devices.getOrThrow(id);
    const { from, to } = timeRange(query);
    return { deviceId: id, from, to, changes: await this.telemetry.presenceHistory(id, from, to) };
  }

  @ApiRoute(operations.getDeviceEvents)
  async events(@Param('id') id: string, @Query() query: unknown): Promise<DeviceEventHistory> {
    await this.devices.getOrThrow(id);
    const { from, to, limit } = timeRange(query);
    return { deviceId: id, from, to, events: await this.telemetry.events(id, from, to, limit) };
  }
}
