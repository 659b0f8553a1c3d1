import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/**
 * Why device messages were dropped before they were stored: no room left while the database was
 * away, a write that failed for good, or the server stopping while the database was away.
 */
export type TelemetryDropReason = 'buffer-full' | 'write-failed' | 'shutdown';

/** One registry per server instance, so several servers in one test process do not collide. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly connectedDevices = new Gauge({
    name: 'boardfleet_connected_devices',
    help: 'Devices with an open MQTT connection to the embedded broker',
    registers: [this.registry],
  });
  readonly messagesReceived = new Counter({
    name: 'boardfleet_mqtt_messages_received_total',
    help: 'Device messages received by the server, by channel',
    labelNames: ['channel'] as const,
    registers: [this.registry],
  });
  readonly messagesSent = new Counter({
    name: 'boardfleet_mqtt_messages_sent_total',
    help: 'Messages the server published to devices, by channel',
    labelNames: ['channel'] as const,
    registers: [this.registry],
  });
  readonly invalidPayloads = new Counter({
    name: 'boardfleet_invalid_payloads_total',
    help: 'Payloads dropped because they were oversized, not JSON, nested too deep, or failed their schema',
    labelNames: ['channel', 'reason'] as const,
    registers: [this.registry],
  });
  readonly telemetryDropped = new Counter<'channel' | 'reason'>({
    name: 'boardfleet_telemetry_dropped_total',
    help: 'Valid device messages dropped before they were stored, by channel and reason (buffer-full, write-failed, shutdown)',
    labelNames: ['channel', 'reason'] as const,
    registers: [this.registry],
  });
  readonly refusedClients = new Counter({
    name: 'boardfleet_mqtt_refused_total',
    help: 'Connections, publishes and subscriptions the broker refused, by kind (connect, publish, subscribe, packet-size, connect-timeout, connection-limit)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly mqttShed = new Counter<'reason'>({
    name: 'boardfleet_mqtt_shed_total',
    help: 'Device messages the broker dropped under overload, by reason (backlog: over twice BOARDFLEET_MQTT_MAX_PENDING_MESSAGES; no-server-session: the server session was away)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly mqttHeldPublishes = new Gauge({
    name: 'boardfleet_mqtt_held_publishes',
    help: 'Device publishes waiting for the broker backlog to shrink (their sockets are not read meanwhile)',
    registers: [this.registry],
  });
  readonly mqttBackpressure = new Counter({
    name: 'boardfleet_mqtt_backpressure_total',
    help: 'Times the broker stopped reading device sockets because BOARDFLEET_MQTT_MAX_PENDING_MESSAGES were pending',
    registers: [this.registry],
  });
  readonly deviceAuthRefused = new Counter<'reason'>({
    name: 'boardfleet_device_auth_refused_total',
    help: 'Device authentications refused (MQTT and HTTP), by reason: bad-credentials, bad-certificate (MQTT over TLS without a valid device certificate when the fleet requires one), or rate-limited (refused unchecked while the id or address waits)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly deviceCertificatesIssued = new Counter<'via'>({
    name: 'boardfleet_device_certificates_issued_total',
    help: 'Device certificates the fleet CA issued, by the way they were asked for: provisioning, https (a device without one), mqtt (a renewal)',
    labelNames: ['via'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'boardfleet_process_' });
  }
}
