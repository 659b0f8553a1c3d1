import { Inject, Injectable } from '@nestjs/common';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { Command } from '../../protocol/schemas.ts';
import { DeviceAuthenticator } from '../broker/device-authenticator.ts';
import { EmbeddedBroker } from '../broker/embedded-broker.ts';
import { ServerMqttClient } from '../broker/server-mqtt-client.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { notFound } from '../common/errors.ts';
import { generateId, generateSecret } from '../common/secrets.ts';
import { TelemetryRepository } from '../telemetry/telemetry.repository.ts';
import { type DeviceFilter, type DeviceRecord, DeviceRepository } from './device.repository.ts';

export interface NewDevice {
  name: string;
  board?: string | undefined;
  tags?: string[] | undefined;
}

@Injectable()
export class DeviceService {
  constructor(
    @Inject(DeviceRepository) private readonly devices: DeviceRepository,
    @Inject(TelemetryRepository) private readonly telemetry: TelemetryRepository,
    @Inject(DeviceAuthenticator) private readonly authenticator: DeviceAuthenticator,
    @Inject(EmbeddedBroker) private readonly broker: EmbeddedBroker,
    @Inject(ServerMqttClient) private readonly mqtt: ServerMqttClient,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** Creates a device; the secret is returned this once and only its keyed hash is kept. */
  async create(input: NewDevice): Promise<{ device: DeviceRecord; secret: string }> {
    const id = generateId('dev');
    const secret = generateSecret('bfd');
    await this.devices.create({
      id,
      name: input.name,
      board: input.board ?? null,
      tags: [...new Set(input.tags ?? [])],
      secretHash: this.authenticator.hashSecret(secret),
      now: this.clock.now(),
    });
    return { device: await this.getOrThrow(id), secret };
  }

  /** A page of devices and how many match in all. */
  async list(filter: DeviceFilter): Promise<{ devices: DeviceRecord[]; total: number }> {
    const [devices, total] = await Promise.all([this.devices.list(filter), this.devices.count(filter)]);
    return { devices, total };
  }

  async getOrThrow(id: string): Promise<DeviceRecord> {
    const device = await this.devices.get(id);
    if (!device) throw notFound(`device ${id}`);
    return device;
  }

  async details(id: string) {
    const device = await this.getOrThrow(id);
    return { ...device, latestHealth: await this.telemetry.latestHealth(id) };
  }

  async setTags(id: string, tags: string[]): Promise<DeviceRecord> {
    await this.getOrThrow(id);
    await this.devices.replaceTags(id, [...new Set(tags)]);
    return this.getOrThrow(id);
  }

  /** Revokes a device: its credential is deleted and its open connection dropped. */
  async revoke(id: string): Promise<DeviceRecord> {
    const device = await this.getOrThrow(id);
    if (device.revokedAt === null) {
      await this.devices.revoke(id, this.clock.now());
      this.broker.disconnect(id);
    }
    return this.getOrThrow(id);
  }

  async sendCommand(id: string, type: Command['type'], args?: Record<string, unknown>): Promise<Command> {
    const device = await this.getOrThrow(id);
    if (device.revokedAt !== null) throw new BoardfleetError('conflict', `device ${id} is revoked`);
    const command: Command = {
      id: generateId('cmd'),
      issuedAt: this.clock.now(),
      type,
      ...(args ? { args } : {}),
    };
    await this.mqtt.publishToDevice(id, 'commands', command, { retain: false });
    return command;
  }
}
