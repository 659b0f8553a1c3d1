import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { startServer } from '../boardfleet-server.ts';
import { loadServerConfig } from './config.ts';

describe('server configuration', () => {
  it('uses the documented defaults', () => {
    const config = loadServerConfig({});
    expect(config).toMatchObject({ httpPort: 8080, mqttPort: 1883, mqttUrl: null, healthRetentionDays: 30 });
    expect(config.databaseUrl).toBe(`sqlite:${join(config.dataDir, 'boardfleet.sqlite')}`);
  });

  it('listens in clear on loopback only, and over TLS on 8443 and 8883 for the network', () => {
    expect(loadServerConfig({})).toMatchObject({
      httpHost: '127.0.0.1',
      mqttHost: '127.0.0.1',
      httpsPort: 8443,
      httpsHost: '0.0.0.0',
      mqttsPort: 8883,
      mqttsHost: '0.0.0.0',
      tlsNames: [hostname(), 'localhost', '127.0.0.1'],
    });
    expect(loadServerConfig({ BOARDFLEET_TLS_NAMES: 'fleet.example.com, 10.0.0.5,::1' }).tlsNames).toEqual([
      'fleet.example.com',
      '10.0.0.5',
      '::1',
    ]);
    expect(() => loadServerConfig({ BOARDFLEET_TLS_NAMES: 'fleet.example.com,not a name' })).toThrow(
      'BOARDFLEET_TLS_NAMES: not a name is not a DNS name or an IP address',
    );
  });

  it('lists every bad variable in one error', () => {
    expect(() =>
      loadServerConfig({
        BOARDFLEET_HTTP_PORT: 'http',
        BOARDFLEET_MQTT_PORT: '70000',
        DATABASE_URL: 'mysql://x',
      }),
    ).toThrow(
      'invalid configuration:\n' +
        '  BOARDFLEET_HTTP_PORT=http is not a port number (0-65535)\n' +
        '  BOARDFLEET_MQTT_PORT=70000 is not a port number (0-65535)\n' +
        '  DATABASE_URL=mysql://x must start with sqlite:, postgres:// or postgresql://',
    );
  });

  it('keeps metrics and API docs open and reads JSON bodies up to 1 MiB by default', () => {
    expect(loadServerConfig({})).toMatchObject({
      httpJsonLimitKib: 1024,
      metricsPublic: true,
      apiDocsPublic: true,
    });
    expect(
      loadServerConfig({
        BOARDFLEET_HTTP_JSON_LIMIT_KIB: '64',
        BOARDFLEET_METRICS_PUBLIC: '0',
        BOARDFLEET_API_DOCS_PUBLIC: '0',
      }),
    ).toMatchObject({ httpJsonLimitKib: 64, metricsPublic: false, apiDocsPublic: false });
  });

  it('refuses an HTTP limit or an access switch it cannot read', () => {
    expect(() =>
      loadServerConfig({
        BOARDFLEET_HTTP_JSON_LIMIT_KIB: '1mb',
        BOARDFLEET_METRICS_PUBLIC: 'no',
        BOARDFLEET_API_DOCS_PUBLIC: 'false',
      }),
    ).toThrow(
      '  BOARDFLEET_HTTP_JSON_LIMIT_KIB=1mb must be a whole number of KiB from 1 to 1048576\n' +
        '  BOARDFLEET_METRICS_PUBLIC=no must be 1 (open) or 0 (operator token needed)\n' +
        '  BOARDFLEET_API_DOCS_PUBLIC=false must be 1 (open) or 0 (operator token needed)',
    );
  });

  it('limits MQTT packets, CONNECT time, connections and the broker backlog, each configurable', () => {
    expect(loadServerConfig({}).mqttLimits).toEqual({
      maxPacketBytes: 128 * 1024,
      connectTimeoutMs: 10_000,
      maxConnections: 10_000,
      maxPendingMessages: 5_000,
    });
    expect(
      loadServerConfig({
        BOARDFLEET_MQTT_MAX_PACKET_KIB: '80',
        BOARDFLEET_MQTT_CONNECT_TIMEOUT_MS: '2000',
        BOARDFLEET_MQTT_MAX_CONNECTIONS: '50000',
        BOARDFLEET_MQTT_MAX_PENDING_MESSAGES: '1000',
      }).mqttLimits,
    ).toEqual({
      maxPacketBytes: 80 * 1024,
      connectTimeoutMs: 2000,
      maxConnections: 50_000,
      maxPendingMessages: 1000,
    });
  });

  it('refuses a packet limit that leaves no room for a 64 KiB message', () => {
    expect(() =>
      loadServerConfig({ BOARDFLEET_MQTT_MAX_PACKET_KIB: '64', BOARDFLEET_MQTT_MAX_CONNECTIONS: 'many' }),
    ).toThrow(
      '  BOARDFLEET_MQTT_MAX_PACKET_KIB=64 must be a whole number from 65 to 262144\n' +
        '  BOARDFLEET_MQTT_MAX_CONNECTIONS=many must be a whole number from 1 to 1000000',
    );
  });

  it('issues no device certificates by default, and requires them only with the embedded broker', () => {
    expect(loadServerConfig({}).deviceCertificates).toBe('off');
    expect(loadServerConfig({ BOARDFLEET_DEVICE_CERTIFICATES: 'required' }).deviceCertificates).toBe(
      'required',
    );
    expect(() => loadServerConfig({ BOARDFLEET_DEVICE_CERTIFICATES: 'optional' })).toThrow(
      '  BOARDFLEET_DEVICE_CERTIFICATES=optional must be off or required',
    );
    // On Mosquitto too: broker-config --device-certificates required writes the listener that checks them.
    expect(
      loadServerConfig({
        BOARDFLEET_DEVICE_CERTIFICATES: 'required',
        MQTT_URL: 'mqtt://mosquitto:1883',
        BOARDFLEET_MQTT_ADMIN_USERNAME: 'admin',
        BOARDFLEET_MQTT_ADMIN_PASSWORD: 'a',
        BOARDFLEET_MQTT_SERVER_USERNAME: 'server',
        BOARDFLEET_MQTT_SERVER_PASSWORD: 's',
      }).deviceCertificates,
    ).toBe('required');
  });

  it('chunks artifacts for delta updates unless BOARDFLEET_DELTA_UPDATES=off', () => {
    expect(loadServerConfig({}).deltaUpdates).toBe(true);
    expect(loadServerConfig({ BOARDFLEET_DELTA_UPDATES: 'on' }).deltaUpdates).toBe(true);
    expect(loadServerConfig({ BOARDFLEET_DELTA_UPDATES: 'off' }).deltaUpdates).toBe(false);
    expect(() => loadServerConfig({ BOARDFLEET_DELTA_UPDATES: 'no' })).toThrow(
      '  BOARDFLEET_DELTA_UPDATES=no must be on or off',
    );
  });

  it('refuses a LOG_LEVEL pino does not know, listed with the other bad variables', () => {
    expect(loadServerConfig({ LOG_LEVEL: 'debug' }).logLevel).toBe('debug');
    expect(loadServerConfig({}).logLevel).toBe('info');
    expect(() => loadServerConfig({ LOG_LEVEL: 'loud', BOARDFLEET_HTTP_PORT: 'http' })).toThrow(
      'invalid configuration:\n' +
        '  BOARDFLEET_HTTP_PORT=http is not a port number (0-65535)\n' +
        '  LOG_LEVEL=loud must be one of fatal, error, warn, info, debug, trace, silent',
    );
  });

  it.each([
    ['HTTP', 'BOARDFLEET_HTTP_PORT'],
    ['MQTT', 'BOARDFLEET_MQTT_PORT'],
  ])('names the variable to set when the %s port is taken', async (what, variable) => {
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const port = (squatter.address() as { port: number }).port;
    try {
      const config = loadServerConfig({
        BOARDFLEET_DATA_DIR: mkdtempSync(join(tmpdir(), 'boardfleet-port-')),
        BOARDFLEET_HTTP_HOST: '127.0.0.1',
        BOARDFLEET_MQTT_HOST: '127.0.0.1',
        BOARDFLEET_HTTP_PORT: '0',
        BOARDFLEET_MQTT_PORT: '0',
        [variable]: String(port),
      });
      await expect(startServer(config, { logger: pino({ level: 'silent' }) })).rejects.toThrow(
        `${what} port ${port} is already in use: set ${variable} to a free port`,
      );
    } finally {
      squatter.close();
    }
  });
});
