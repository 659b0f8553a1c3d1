import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import type { Logger } from 'pino';
import { deviceTopic } from '../../../protocol/topics.ts';
import type { DeviceBroker, ServerSessionEndpoint } from '../device-broker.ts';
import { DynsecAdmin } from './dynsec-admin.ts';

export interface MosquittoBrokerOptions {
  /** `mqtt://host:port`: where the server connects, and the port agents are told by default. */
  url: string;
  admin: { username: string; password: string };
  server: { username: string; password: string };
  /** Its TLS listener (broker-config writes one with the server certificate): the port agents are told. */
  tlsPort?: number | null;
  /** Its pid file, when it runs next to the server: signalled to reload a renewed server certificate. */
  pidFile?: string | null;
  logger: Logger;
}

/** Every server replica's session joins this group, so each device message reaches one of them. */
export const SERVER_SHARED_GROUP = 'boardfleet';
const MQTT_DEFAULT_PORT = 1883;
/** The retained topics of a device: its presence and inventory, and the desired state sent to it. */
const RETAINED_CHANNELS = ['presence', 'inventory', 'desired'] as const;

/**
 * Mosquitto as the fleet's broker: device access lives in its dynamic-security plugin, one
 * client and role per device (dynsec-acl.ts), managed through the admin credential.
 */
export class MosquittoBroker implements DeviceBroker {
  private admin: DynsecAdmin | null = null;

  constructor(private readonly options: MosquittoBrokerOptions) {}

  async start(): Promise<void> {
    this.admin = await DynsecAdmin.connect({
      url: this.options.url,
      ...this.options.admin,
      logger: this.options.logger,
    });
    // In the background: thousands of roles take a while, and devices connect meanwhile.
    void this.admin.updateDeviceRoles().then(
      (updated) => {
        if (updated > 0)
          this.options.logger.info(
            { updated },
            `gave ${updated} device roles the channels this server added`,
          );
      },
      (error: unknown) =>
        this.options.logger.warn(
          { err: error },
          'device roles not updated: live logs and the shell may be refused',
        ),
    );
  }

  serverSession(): ServerSessionEndpoint {
    return { url: this.options.url, ...this.options.server, sharedGroup: SERVER_SHARED_GROUP };
  }

  devicePort(): number {
    return Number(new URL(this.options.url).port || MQTT_DEFAULT_PORT);
  }

  deviceTlsPort(): number | null {
    return this.options.tlsPort ?? null;
  }

  /**
   * Has Mosquitto read the server certificate again (it does on SIGHUP); without a pid file, or
   * when the signal cannot be sent, it presents the old one until restarted, which the log says.
   */
  reloadCertificates(): void {
    const { pidFile, logger } = this.options;
    if (!pidFile) return;
    try {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${pidFile} holds no process id`);
      process.kill(pid, 'SIGHUP');
      logger.info({ pid, pidFile }, 'Mosquitto told to reload the server certificate (SIGHUP)');
    } catch (error) {
      logger.warn(
        { err: error, pidFile },
        'Mosquitto could not be told to reload the server certificate: it presents the old one until it is restarted or sent SIGHUP',
      );
    }
  }

  async registerDevice(deviceId: string, secret: string): Promise<void> {
    await this.dynsec().addDevice(deviceId, secret);
  }

  /**
   * Registers a device the plugin has no client for (one registered before the switch to
   * Mosquitto); an existing client keeps its secret. Two agents' requests racing to add it are
   * fine: the loser finds the client there.
   */
  async ensureDevice(deviceId: string, secret: string): Promise<boolean> {
    const admin = this.dynsec();
    if ((await admin.getClient(deviceId)) !== null) return false;
    try {
      await admin.addDevice(deviceId, secret);
    } catch (error) {
      if ((await admin.getClient(deviceId)) !== null) return false;
      throw error;
    }
    this.options.logger.info(
      { deviceId, mqttUrl: this.options.url },
      `device ${deviceId} moved to ${this.options.url}: its credential is registered there`,
    );
    return true;
  }

  async changeDeviceSecret(deviceId: string, secret: string): Promise<void> {
    const admin = this.dynsec();
    if ((await admin.getClient(deviceId)) === null) await admin.addDevice(deviceId, secret);
    else await admin.setClientPassword(deviceId, secret);
  }

  /** Deleting the client makes the plugin drop its live connection, and refuse it from then on. */
  async revokeDevice(deviceId: string): Promise<void> {
    await this.dynsec().removeDevice(deviceId);
  }

  /**
   * Removes the device's client and clears its retained messages, as the server's own credential
   * (the admin's role reaches only the plugin's topics). Its persistent session is left to expire
   * (`persistent_client_expiration`): nobody can log in to it any more.
   */
  async forgetDevice(deviceId: string): Promise<void> {
    await this.dynsec().removeDevice(deviceId);
    const client = await mqtt.connectAsync(this.options.url, {
      protocolVersion: 4,
      clientId: `${this.options.server.username}-forget-${randomUUID().slice(0, 8)}`,
      username: this.options.server.username,
      password: this.options.server.password,
      clean: true,
      reconnectPeriod: 0,
    });
    try {
      // An empty retained payload deletes the retained message (MQTT 3.1.1, 3.3.1.3).
      for (const channel of RETAINED_CHANNELS)
        await client.publishAsync(deviceTopic(deviceId, channel), '', { qos: 1, retain: true });
    } finally {
      await client.endAsync();
    }
  }

  /** Devices stay connected to the broker: it runs on, and other replicas may serve them. */
  async disconnectDevices(): Promise<void> {}

  async stop(): Promise<void> {
    await this.admin?.close();
    this.admin = null;
  }

  /** How many of these devices have no client in the plugin (registered before the switch). */
  async countUnregistered(deviceIds: readonly string[]): Promise<number> {
    const registered = new Set(await this.dynsec().listClients());
    return deviceIds.filter((id) => !registered.has(id)).length;
  }

  private dynsec(): DynsecAdmin {
    if (!this.admin) throw new Error('the Mosquitto broker connection is not started');
    return this.admin;
  }
}
