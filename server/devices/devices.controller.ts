import { Body, Controller, Get, HttpCode, Inject, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { parseBody } from '../common/zod-body.ts';
import { TelemetryRepository } from '../telemetry/telemetry.repository.ts';
import {
  createDeviceBody,
  listDevicesQuery,
  sendCommandBody,
  timeRangeQuery,
  updateDeviceBody,
} from './device.dto.ts';
import { DeviceService } from './device.service.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

function timeRange(query: unknown) {
  const { from, to, limit } = parseBody(timeRangeQuery, query);
  const end = to ?? Date.now();
  return { from: from ?? end - DAY_MS, to: end, limit };
}

@ApiTags('devices')
@ApiBearerAuth()
@Controller('api/v1/devices')
export class DevicesController {
  constructor(
    @Inject(DeviceService) private readonly devices: DeviceService,
    @Inject(TelemetryRepository) private readonly telemetry: TelemetryRepository,
  ) {}

  @Post()
  @ApiOperation({ summary: 'Create a device; the response carries its secret, shown only this once' })
  @ApiBody({ schema: z.toJSONSchema(createDeviceBody) as object })
  create(@Body() body: unknown) {
    return this.devices.create(parseBody(createDeviceBody, body));
  }

  @Get()
  @ApiOperation({
    summary:
      'List devices, paginated (limit, offset) with the total that match. Filters: tag, board (reported, else registered), ' +
      'online, version (running), q (case-insensitive part of the name or id); sort: name or lastSeen (default: registration order)',
  })
  async list(@Query() query: unknown) {
    const { q, ...filter } = parseBody(listDevicesQuery, query);
    const { devices, total } = await this.devices.list({ ...filter, ...(q ? { search: q } : {}) });
    return { devices, total, limit: filter.limit, offset: filter.offset };
  }

  @Get(':id')
  @ApiOperation({ summary: 'A device with its inventory and latest health' })
  get(@Param('id') id: string) {
    return this.devices.details(id);
  }

  @Patch(':id')
  @ApiOperation({ summary: "Replace a device's tags" })
  @ApiBody({ schema: z.toJSONSchema(updateDeviceBody) as object })
  update(@Param('id') id: string, @Body() body: unknown) {
    return this.devices.setTags(id, parseBody(updateDeviceBody, body).tags);
  }

  @Post(':id/revoke')
  @HttpCode(200)
  @ApiOperation({ summary: 'Revoke a device: its credential is deleted and its connection dropped' })
  revoke(@Param('id') id: string) {
    return this.devices.revoke(id);
  }

  @Post(':id/commands')
  @HttpCode(202)
  @ApiOperation({ summary: 'Send a one-off command (ping, report) to a device' })
  @ApiBody({ schema: z.toJSONSchema(sendCommandBody) as object })
  command(@Param('id') id: string, @Body() body: unknown) {
    const { type, args } = parseBody(sendCommandBody, body);
    return this.devices.sendCommand(id, type, args);
  }

  @Get(':id/deployments')
  @ApiOperation({
    summary:
      'Deployment history: each rollout that included the device (release, version, state, outcome, reason, times), newest first',
  })
  async deployments(@Param('id') id: string) {
    return { deviceId: id, deployments: await this.devices.deploymentHistory(id) };
  }

  @Get(':id/health')
  @ApiOperation({
    summary: 'Health samples in a time range (from/to in ms since the epoch; default the last day)',
  })
  async health(@Param('id') id: string, @Query() query: unknown) {
    await this.devices.getOrThrow(id);
    const { from, to, limit } = timeRange(query);
    return { deviceId: id, from, to, samples: await this.telemetry.healthHistory(id, from, to, limit) };
  }

  @Get(':id/presence')
  @ApiOperation({ summary: 'Online/offline changes in a time range' })
  async presence(@Param('id') id: string, @Query() query: unknown) {
    await this.devices.getOrThrow(id);
    const { from, to } = timeRange(query);
    return { deviceId: id, from, to, changes: await this.telemetry.presenceHistory(id, from, to) };
  }

  @Get(':id/events')
  @ApiOperation({ summary: 'Events the device reported in a time range' })
  async events(@Param('id') id: string, @Query() query: unknown) {
    await this.devices.getOrThrow(id);
    const { from, to, limit } = timeRange(query);
    return { deviceId: id, from, to, events: await this.telemetry.events(id, from, to, limit) };
  }
}
