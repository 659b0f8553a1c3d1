import type { Logger } from 'pino';
import { ensureServerMqttSecret } from '../auth/bootstrap-credentials.ts';
import type { ServerConfig } from '../config/config.ts';
import type { DeviceRepository } from '../devices/device.repository.ts';
import type { ServerMetrics } from '../metrics/metrics.ts';
import type { FleetTls } from '../tls/fleet-tls.ts';
import type { DeviceAuthenticator } from './device-authenticator.ts';
import type { DeviceBroker } from './device-broker.ts';
import { EmbeddedBroker } from './embedded-broker.ts';
import { MosquittoBroker } from './mosquitto/mosquitto-broker.ts';

/**
 * Starts the broker the configuration names: Mosquitto at MQTT_URL, or the embedded one. On
 * Mosquitto, devices registered before the switch have no client there yet: the start says how
 * many. Each gets one when its agent next asks for the broker's URL with its credentials (it does
 * on every start, and when the broker refuses it), see ProvisioningController.mqttEndpointFor.
 */
export async function openDeviceBroker(
  config: ServerConfig,
  dependencies: {
    authenticator: DeviceAuthenticator;
    devices: DeviceRepository;
    metrics: ServerMetrics;
    /** The certificate MQTT over TLS presents. */
    tls: FleetTls;
    logger: Logger;
  },
): Promise<DeviceBroker> {
  const { authenticator, devices, metrics, tls, logger } = dependencies;
  if (config.mqttUrl === null || config.mqttCredentials === null) {
    const broker = new EmbeddedBroker({
      host: config.mqttHost,
      port: config.mqttPort,
      tls: {
        host: config.mqttsHost,
        port: config.mqttsPort,
        certificates: tls,
        requireDeviceCertificates: config.deviceCertificates === 'required',
      },
      serverSecret: ensureServerMqttSecret(config.dataDir),
      authenticator,
      limits: config.mqttLimits,
      metrics,
      logger,
    });
    await broker.start();
    return broker;
  }
  const broker = new MosquittoBroker({
    url: config.mqttUrl,
    ...config.mqttCredentials,
    tlsPort: config.externalBrokerTls?.port ?? null,
    pidFile: config.externalBrokerTls?.pidFile ?? null,
    logger,
  });
  await broker.start();
  // Mosquitto presents the certificate this server keeps in its data folder.
  if (tls.issuedAtStart) broker.reloadCertificates();
  tls.onRenewed(() => broker.reloadCertificates());
  try {
    const unregistered = await broker.countUnregistered(await devices.activeIds());
    if (unregistered > 0) {
      logger.warn(
        { devices: unregistered, mqttUrl: config.mqttUrl },
        `${unregistered} device(s) registered before the switch to ${config.mqttUrl} have no credential ` +
          'on that broker yet: each is registered there when its agent next asks the server where the broker is ' +
          '(on its start, or once the broker has refused it); a log line names each device moved',
      );
    }
  } catch (error) {
    await broker.stop();
    throw error;
  }
  return broker;
}
