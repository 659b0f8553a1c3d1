import { Inject, Injectable } from '@nestjs/common';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { Command } from '../../protocol/schemas.ts';
import { DeviceAuthenticator } from '../broker/device-authenticator.ts';
import { DEVICE_BROKER, type DeviceBroker } from '../broker/device-broker.ts';
import { ServerMqttClient } from '../broker/server-mqtt-client.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { ConfigVariablesService } from '../config-variables/config-variables.service.ts';
import { notFound } from '../common/errors.ts';
import { generateId, generateSecret } from '../common/secrets.ts';
import { TelemetryRepository } from '../telemetry/telemetry.repository.ts';
import { type DeviceFilter, type DeviceRecord, DeviceRepository } from './device.repository.ts';

export interface NewDevice {
  name: string;
  board?: string | undefined;
  tags?: string[] | undefined;
  /** What to do when another registered device has the name: refuse (default), keep it, or add `-N`. */
  onDuplicateName?: 'refuse' | 'allow' | 'suffix';
}

/** The lowest `name-N` (N ≥ 2) not among the taken names (lower-cased). */
export function freeSuffixedName(name: string, taken: ReadonlySet<string>): string {
  for (let n = 2; ; n++) {
    const candidate = `${name}-${n}`;
    if (!taken.has(candidate.toLowerCase())) return candidate;
  }
}

@Injectable()
export class DeviceService {
  constructor(
    @Inject(DeviceRepository) private readonly devices: DeviceRepository,
    @Inject(TelemetryRepository) private readonly telemetry: TelemetryRepository,
    @Inject(DeviceAuthenticator) private readonly authenticator: DeviceAuthenticator,
    @Inject(DEVICE_BROKER) private readonly broker: DeviceBroker,
    @Inject(ServerMqttClient) private readonly mqtt: ServerMqttClient,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(ConfigVariablesService) private readonly config: ConfigVariablesService,
  ) {}

  /**
   * Creates a device; the secret is returned this once and only its keyed hash is kept. The broker
   * gets it now, the only moment it is known in clear; a device the broker refused is not kept.
   */
  async create(input: NewDevice): Promise<{ device: DeviceRecord; secret: string }> {
    const name = await this.nameFor(input.name, input.onDuplicateName ?? 'refuse');
    const id = generateId('dev');
    const secret = generateSecret('bfd');
    await this.devices.create({
      id,
      name,
      board: input.board ?? null,
      tags: [...new Set(input.tags ?? [])],
      secretHash: this.authenticator.hashSecret(secret),
      now: this.clock.now(),
    });
    try {
      await this.broker.registerDevice(id, secret);
    } catch (error) {
      await this.devices.delete(id);
      throw error;
    }
    // Fleet and tag variables set before it existed wait for it in its first desired state.
    await this.config.devicesChanged([id]);
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
    return {
      ...device,
      latestHealth: await this.telemetry.latestHealth(id),
      configApplied: await this.config.configApplied(device),
    };
  }

  /** Renames a device and/or replaces its tags. */
  async update(
    id: string,
    change: { name?: string | undefined; tags?: string[] | undefined; allowDuplicate?: boolean | undefined },
  ): Promise<DeviceRecord> {
    const device = await this.getOrThrow(id);
    if (change.name !== undefined && change.name !== device.name) {
      // Renaming in case only ("kitchen-pi" → "Kitchen-Pi") does not collide with itself.
      const sameName = change.name.toLowerCase() === device.name.toLowerCase();
      if (!sameName) await this.nameFor(change.name, change.allowDuplicate ? 'allow' : 'refuse');
      await this.devices.rename(id, change.name);
    }
    if (change.tags !== undefined) {
      await this.devices.replaceTags(id, [...new Set(change.tags)]);
      // Its tag variables change with its tags.
      await this.config.devicesChanged([id]);
    }
    return this.getOrThrow(id);
  }

  /**
   * Revokes a device: its credential is deleted and its open connection dropped. Asked again, it
   * repeats the broker's part, which may have failed the first time (an external broker away).
   */
  async revoke(id: string): Promise<DeviceRecord> {
    const device = await this.getOrThrow(id);
    if (device.revokedAt === null) await this.devices.revoke(id, this.clock.now());
    await this.broker.revokeDevice(id);
    return this.getOrThrow(id);
  }

  /**
   * Deletes a revoked device with its history and its MQTT session. A device not revoked is
   * refused: revoking first makes deletion a second, deliberate step, and by then the broker has
   * closed the connection and published its last will, so nothing is left to arrive after.
   */
  async delete(id: string): Promise<DeviceRecord> {
    const device = await this.getOrThrow(id);
    if (device.revokedAt === null) {
      throw new BoardfleetError(
        'conflict',
        `device ${id} (${device.name}) is not revoked: revoke it first (boardfleet devices revoke ${id}), then delete it`,
      );
    }
    await this.devices.delete(id);
    await this.config.deviceDeleted(id);
    await this.broker.forgetDevice(id);
    return device;
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

  /**
   * The name a new or renamed device gets. Two registered devices with one name (case aside) make
   * every list ambiguous, so a taken name is refused unless allowed; provisioning adds a suffix
   * instead. The check and the insert are not one transaction: two simultaneous registrations of
   * one name may both succeed, which duplicates allow anyway.
   */
  private async nameFor(name: string, onDuplicate: 'refuse' | 'allow' | 'suffix'): Promise<string> {
    if (onDuplicate === 'allow') return name;
    const taken = await this.devices.namesLike(name);
    if (!taken.has(name.toLowerCase())) return name;
    if (onDuplicate === 'suffix') return freeSuffixedName(name, taken);
    throw new BoardfleetError(
      'conflict',
      `a device named ${name} already exists: choose another name, or allow a duplicate (--allow-duplicate, API field allowDuplicate)`,
    );
  }
}
