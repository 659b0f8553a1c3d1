import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BoardfleetError } from '../../protocol/errors.ts';
import { RECIPES_DIRECTORY } from '../../builder/recipe/recipe.ts';
import { defaultCacheDir } from '../../builder/steps/cached-step.ts';
import {
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
  type LogLevel,
  isLogFormat,
  isLogLevel,
} from '../../lib/log-output.ts';

export interface ServerConfig {
  httpPort: number;
  /** Plain HTTP: loopback by default, the API over the network goes through HTTPS. */
  httpHost: string;
  mqttPort: number;
  /** Plain MQTT of the embedded broker: loopback by default, devices come through MQTTS. */
  mqttHost: string;
  httpsPort: number;
  httpsHost: string;
  /** MQTT over TLS of the embedded broker (with MQTT_URL, see `externalBrokerTls`). */
  mqttsPort: number;
  mqttsHost: string;
  /** Names and addresses the server certificate is issued for (its subject alternative names). */
  tlsNames: string[];
  /** `required`: devices connect with a client certificate of the fleet CA (mTLS), issued and renewed by the server. */
  deviceCertificates: 'off' | 'required';
  /** Address agents are told to use when they provision; null: derived from the request's host. */
  mqttPublicUrl: string | null;
  dataDir: string;
  databaseUrl: string;
  /** External broker (Mosquitto); null runs the embedded Aedes broker. */
  mqttUrl: string | null;
  /** The external broker's credentials for the server: set exactly when `mqttUrl` is. */
  mqttCredentials: ExternalBrokerCredentials | null;
  /**
   * With `mqttUrl`: the broker's TLS listener agents are told (BOARDFLEET_MQTTS_PORT when set, as
   * broker-config writes it; else none), and its pid file, signalled to reload the server
   * certificate it presents when the server renews it.
   */
  externalBrokerTls: { port: number | null; pidFile: string | null } | null;
  healthRetentionDays: number;
  /** Operator-provided ed25519 key (PKCS#8 PEM); null: generated in the data dir on the first start. */
  signingKeyPath: string | null;
  logLevel: LogLevel;
  /** From LOG_FORMAT; undefined lets stdout decide. */
  logFormat?: LogFormat;
  /** Image recipes (`<name>.yaml`) the build API may build. */
  recipesDir: string;
  /** Downloads and finished build steps, keyed by content: shared by every data dir on the machine. */
  buildCacheDir: string;
  /** Image builds run at once. */
  buildConcurrency: number;
  /** The first webhook retry's wait in seconds; each next one doubles, up to an hour. */
  webhookRetrySeconds: number;
  /** The built dashboard served at `/`. */
  webDir: string;
  /** Largest JSON request body read, in KiB; a larger one is refused with 413 before it is parsed. */
  httpJsonLimitKib: number;
  /** false: `/metrics` needs an operator token (viewer or above). */
  metricsPublic: boolean;
  /** false: the OpenAPI UI and documents under `/api/docs` need an operator token (viewer or above). */
  apiDocsPublic: boolean;
  /** What the embedded broker accepts from a connection before and after it authenticates. */
  mqttLimits: BrokerLimits;
  /** Where artifact contents are kept, for every replica to read. */
  artifactStore: ArtifactStoreConfig;
  /** Deployable artifacts are chunked on upload and devices fetch only the chunks they lack. */
  deltaUpdates: boolean;
  /** A remote shell session without input or output for this long is ended (both ends). */
  shellIdleSeconds: number;
  /** Keep what each shell session printed (its first MiB) with the session's record. */
  shellTranscripts: boolean;
}

/** The data folder (shared by replicas), or an S3-compatible bucket. */
export type ArtifactStoreConfig =
  | { kind: 'folder' }
  | { kind: 's3'; bucket: string; region: string; endpoint: string | null; forcePathStyle: boolean };

export interface ExternalBrokerCredentials {
  /** Manages device clients (Mosquitto's dynamic-security admin). */
  admin: { username: string; password: string };
  /** The server's own MQTT session. */
  server: { username: string; password: string };
}

export interface BrokerLimits {
  /** Largest MQTT packet (remaining length) read; a connection announcing a larger one is closed. */
  maxPacketBytes: number;
  /** A connection that has not sent its CONNECT within this time is closed. */
  connectTimeoutMs: number;
  /** Open MQTT connections, authenticated or not; new ones beyond it are closed at once. */
  maxConnections: number;
  /** Device messages routed but not yet taken by the server's session; at this many, device sockets pause. */
  maxPendingMessages: number;
}

/** Every variable the server reads, with its default and meaning; the README's table comes from here. */
export const SERVER_ENVIRONMENT = {
  BOARDFLEET_HTTP_PORT: {
    default: '8080',
    meaning: 'REST API, OpenAPI UI (/api/docs), /healthz and /metrics',
  },
  BOARDFLEET_HTTP_HOST: {
    default: '127.0.0.1',
    meaning:
      'address plain HTTP binds; 0.0.0.0 opens it to the network (logged as a warning: tokens would travel in clear)',
  },
  BOARDFLEET_MQTT_PORT: { default: '1883', meaning: 'port of the embedded MQTT broker, plain MQTT' },
  BOARDFLEET_MQTT_HOST: {
    default: '127.0.0.1',
    meaning:
      'address plain MQTT binds; 0.0.0.0 opens it to the network (logged as a warning: device secrets would travel in clear)',
  },
  BOARDFLEET_HTTPS_PORT: {
    default: '8443',
    meaning: "the API, dashboard and TUF metadata over TLS, with the fleet CA's server certificate",
  },
  BOARDFLEET_HTTPS_HOST: { default: '0.0.0.0', meaning: 'address HTTPS binds' },
  BOARDFLEET_MQTTS_PORT: {
    default: '8883',
    meaning:
      'the embedded MQTT broker over TLS; with MQTT_URL, the TLS port of that broker agents are told (broker-config writes it)',
  },
  BOARDFLEET_MQTTS_HOST: { default: '0.0.0.0', meaning: 'address MQTT over TLS binds' },
  BOARDFLEET_MOSQUITTO_PID_FILE: {
    default: 'unset',
    meaning:
      'with MQTT_URL: the pid file of a Mosquitto on this machine presenting the server certificate (broker-config writes it); sent SIGHUP when the server renews the certificate',
  },
  BOARDFLEET_TLS_NAMES: {
    default: '<host name>,localhost,127.0.0.1',
    meaning:
      'comma-separated DNS names and IP addresses the server certificate covers: every name agents and browsers use to reach the server',
  },
  BOARDFLEET_DEVICE_CERTIFICATES: {
    default: 'off',
    meaning:
      'required: devices connect over MQTT over TLS with their secret and a 7-day certificate of the fleet CA for a key made on the device (issued at provisioning, renewed over MQTT); plain MQTT then serves only the server. On Mosquitto, broker-config --device-certificates required writes the matching listener',
  },
  BOARDFLEET_MQTT_PUBLIC_URL: {
    default: '(derived)',
    meaning:
      "MQTT URL handed to provisioned agents; default mqtt://<host the agent used>:<BOARDFLEET_MQTT_PORT, or MQTT_URL's port>",
  },
  BOARDFLEET_DATA_DIR: { default: './data', meaning: 'database file, admin token, broker credential' },
  DATABASE_URL: {
    default: 'sqlite:<data dir>/boardfleet.sqlite',
    meaning: 'sqlite:PATH for SQLite, postgres://user@host/db for PostgreSQL',
  },
  MQTT_URL: {
    default: '(unset)',
    meaning:
      'mqtt://host:port of an external broker (Mosquitto with its dynamic-security plugin, see Scale-out): no embedded broker is started; needs the four BOARDFLEET_MQTT_ADMIN_*/SERVER_* variables',
  },
  BOARDFLEET_MQTT_ADMIN_USERNAME: {
    default: '(unset)',
    meaning: "with MQTT_URL: the broker's dynamic-security admin, which adds and removes device clients",
  },
  BOARDFLEET_MQTT_ADMIN_PASSWORD: { default: '(unset)', meaning: 'with MQTT_URL: its password' },
  BOARDFLEET_MQTT_SERVER_USERNAME: {
    default: '(unset)',
    meaning: "with MQTT_URL: the server's own MQTT session on the broker",
  },
  BOARDFLEET_MQTT_SERVER_PASSWORD: { default: '(unset)', meaning: 'with MQTT_URL: its password' },
  BOARDFLEET_HEALTH_RETENTION_DAYS: { default: '30', meaning: 'health samples older than this are deleted' },
  BOARDFLEET_SIGNING_KEY: {
    default: '<data dir>/fleet-signing.key',
    meaning: 'ed25519 private key (PKCS#8 PEM) that signs artifact manifests; generated on the first start',
  },
  BOARDFLEET_RECIPES_DIR: {
    default: '<install dir>/firmware-recipes',
    meaning: 'image recipes (<name>.yaml) the build API builds',
  },
  BOARDFLEET_BUILD_CACHE: {
    default: '$XDG_CACHE_HOME/boardfleet or ~/.cache/boardfleet',
    meaning: 'Debian packages, Node runtimes and finished build steps, by content hash',
  },
  BOARDFLEET_BUILD_CONCURRENCY: { default: '1', meaning: 'image builds that run at once' },
  BOARDFLEET_WEBHOOK_RETRY_SECONDS: {
    default: '10',
    meaning: "a failed webhook delivery's first retry wait; doubling each time, at most an hour, 10 attempts",
  },
  BOARDFLEET_WEB_DIR: {
    default: '<install dir>/server/web/dist',
    meaning: 'the built dashboard (npm run build:web) served at /',
  },
  BOARDFLEET_HTTP_JSON_LIMIT_KIB: {
    default: '1024',
    meaning:
      'largest JSON request body in KiB; larger ones get 413 (an explicit rollout list of ~25,000 devices fits)',
  },
  BOARDFLEET_METRICS_PUBLIC: {
    default: '1',
    meaning: '0: /metrics needs an operator token (viewer or above) as Authorization: Bearer',
  },
  BOARDFLEET_API_DOCS_PUBLIC: {
    default: '1',
    meaning: '0: the OpenAPI UI and documents under /api/docs need an operator token (viewer or above)',
  },
  BOARDFLEET_MQTT_MAX_PACKET_KIB: {
    default: '128',
    meaning:
      'largest MQTT packet in KiB, checked from its header before it is read or authenticated; the connection is closed (payloads over 64 KiB are refused anyway)',
  },
  BOARDFLEET_MQTT_CONNECT_TIMEOUT_MS: {
    default: '10000',
    meaning: 'a connection that has not sent its MQTT CONNECT within this time is closed',
  },
  BOARDFLEET_MQTT_MAX_CONNECTIONS: {
    default: '10000',
    meaning:
      'open MQTT connections (authenticated or not); beyond it new ones are closed at once and counted (keep below the open-files limit)',
  },
  BOARDFLEET_MQTT_MAX_PENDING_MESSAGES: {
    default: '5000',
    meaning:
      "device messages routed by the broker but not yet taken by the server's MQTT session; at this many, device sockets are not read until the backlog halves, and what still comes past twice the limit is dropped and counted",
  },
  BOARDFLEET_ARTIFACT_STORE: {
    default: 'folder',
    meaning:
      'folder: artifact contents under <data dir>/artifacts (replicas share the data dir); s3: in an S3-compatible bucket',
  },
  BOARDFLEET_S3_ENDPOINT: {
    default: '(AWS S3)',
    meaning: 'URL of an S3-compatible server (MinIO, Ceph, Garage…); unset: AWS S3 in the region',
  },
  BOARDFLEET_S3_BUCKET: {
    default: '(unset)',
    meaning:
      'existing bucket for artifact contents, needed with BOARDFLEET_ARTIFACT_STORE=s3; credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
  },
  BOARDFLEET_S3_REGION: { default: '$AWS_REGION or us-east-1', meaning: 'region of the bucket' },
  BOARDFLEET_S3_PATH_STYLE: {
    default: '0',
    meaning:
      '1: address the bucket as <endpoint>/<bucket> (MinIO and most S3-compatible servers), not <bucket>.<endpoint>',
  },
  BOARDFLEET_DELTA_UPDATES: {
    default: 'on',
    meaning:
      'on: deployable artifacts of 256 KiB or more are cut into chunks on upload, and devices fetch only the chunks they lack; off: no chunking, the chunk endpoints answer 404 and devices download whole artifacts',
  },
  BOARDFLEET_SHELL_IDLE_TIMEOUT: {
    default: '900',
    meaning: 'seconds without input or output after which a remote shell session is ended (60 to 86400)',
  },
  BOARDFLEET_SHELL_TRANSCRIPTS: {
    default: 'off',
    meaning:
      'on: keep what each remote shell session printed (its first MiB) for admins to read back (GET /api/v1/shell-sessions/{id}/transcript)',
  },
  LOG_LEVEL: {
    default: 'info',
    meaning: 'pino log level (trace, debug, info, warn, error, fatal, silent)',
  },
  LOG_FORMAT: {
    default: '',
    meaning: 'pretty (readable lines) or json; unset, pretty on a terminal and JSON otherwise',
  },
} as const;

type Environment = Record<string, string | undefined>;

/** The broker limits, each problem added to `problems`. */
function readBrokerLimits(env: Environment, problems: string[]): BrokerLimits {
  const wholeNumber = (name: keyof typeof SERVER_ENVIRONMENT, min: number, max: number): number => {
    const raw = env[name] ?? SERVER_ENVIRONMENT[name].default;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.push(`${name}=${raw} must be a whole number from ${min} to ${max}`);
      return min;
    }
    return value;
  };
  return {
    // A message is at most 64 KiB of payload: the packet needs room for its topic and headers.
    maxPacketBytes: wholeNumber('BOARDFLEET_MQTT_MAX_PACKET_KIB', 65, 256 * 1024) * 1024,
    connectTimeoutMs: wholeNumber('BOARDFLEET_MQTT_CONNECT_TIMEOUT_MS', 100, 600_000),
    maxConnections: wholeNumber('BOARDFLEET_MQTT_MAX_CONNECTIONS', 1, 1_000_000),
    maxPendingMessages: wholeNumber('BOARDFLEET_MQTT_MAX_PENDING_MESSAGES', 100, 10_000_000),
  };
}

/** The artifact store, each problem added to `problems`. */
function readArtifactStore(env: Environment, problems: string[]): ArtifactStoreConfig {
  const kind = env.BOARDFLEET_ARTIFACT_STORE || SERVER_ENVIRONMENT.BOARDFLEET_ARTIFACT_STORE.default;
  if (kind === 'folder') return { kind };
  if (kind !== 's3') {
    problems.push(`BOARDFLEET_ARTIFACT_STORE=${kind} must be folder or s3`);
    return { kind: 'folder' };
  }
  const bucket = env.BOARDFLEET_S3_BUCKET ?? '';
  if (!bucket) problems.push('BOARDFLEET_S3_BUCKET must name the bucket when BOARDFLEET_ARTIFACT_STORE=s3');
  const endpoint = env.BOARDFLEET_S3_ENDPOINT || null;
  if (endpoint && !/^https?:\/\/[^/]/.test(endpoint))
    problems.push(`BOARDFLEET_S3_ENDPOINT=${endpoint} must start with http:// or https://`);
  const pathStyle = env.BOARDFLEET_S3_PATH_STYLE ?? SERVER_ENVIRONMENT.BOARDFLEET_S3_PATH_STYLE.default;
  if (pathStyle !== '0' && pathStyle !== '1')
    problems.push(`BOARDFLEET_S3_PATH_STYLE=${pathStyle} must be 1 (<endpoint>/<bucket>) or 0`);
  return {
    kind,
    bucket,
    region: env.BOARDFLEET_S3_REGION || env.AWS_REGION || 'us-east-1',
    endpoint,
    forcePathStyle: pathStyle === '1',
  };
}

const EXTERNAL_BROKER_VARIABLES = [
  'BOARDFLEET_MQTT_ADMIN_USERNAME',
  'BOARDFLEET_MQTT_ADMIN_PASSWORD',
  'BOARDFLEET_MQTT_SERVER_USERNAME',
  'BOARDFLEET_MQTT_SERVER_PASSWORD',
] as const;

/**
 * The external broker and its credentials, each problem added to `problems`: the URL and the four
 * credential variables come together (`boardfleet broker-config mosquitto` writes all five).
 */
function readExternalBroker(
  env: Environment,
  problems: string[],
): { mqttUrl: string | null; mqttCredentials: ExternalBrokerCredentials | null } {
  const mqttUrl = env.MQTT_URL || null;
  const missing = EXTERNAL_BROKER_VARIABLES.filter((name) => !env[name]);
  if (mqttUrl === null) {
    const stray = EXTERNAL_BROKER_VARIABLES.filter((name) => env[name]);
    if (stray.length > 0)
      problems.push(`${stray.join(', ')} set without MQTT_URL: set MQTT_URL too, or unset them`);
    return { mqttUrl: null, mqttCredentials: null };
  }
  if (!/^mqtt:\/\/[^/:]+(:\d+)?\/?$/.test(mqttUrl))
    problems.push(`MQTT_URL=${mqttUrl} must be mqtt://host:port`);
  if (missing.length > 0) {
    problems.push(
      `MQTT_URL is set but ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not: ` +
        'the server needs the broker admin and its own credential (boardfleet broker-config mosquitto writes them in boardfleet.env)',
    );
  }
  const value = (name: (typeof EXTERNAL_BROKER_VARIABLES)[number]) => env[name] ?? '';
  return {
    mqttUrl,
    mqttCredentials: {
      admin: {
        username: value('BOARDFLEET_MQTT_ADMIN_USERNAME'),
        password: value('BOARDFLEET_MQTT_ADMIN_PASSWORD'),
      },
      server: {
        username: value('BOARDFLEET_MQTT_SERVER_USERNAME'),
        password: value('BOARDFLEET_MQTT_SERVER_PASSWORD'),
      },
    },
  };
}

/** The names the server certificate covers, as the server reads them; an error naming a bad one. */
export function tlsNamesOf(env: Environment): string[] {
  const problems: string[] = [];
  const names = readTlsNames(env, problems);
  if (problems.length > 0) throw new BoardfleetError('invalid-config', problems.join('; '));
  return names;
}

/** DNS names and IP addresses for the server certificate, each problem added to `problems`. */
function readTlsNames(env: Environment, problems: string[]): string[] {
  const raw = env.BOARDFLEET_TLS_NAMES;
  if (raw === undefined || raw.trim() === '') return [...new Set([hostname(), 'localhost', '127.0.0.1'])];
  const names = raw
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  const bad = names.filter(
    (name) =>
      isIP(name) === 0 &&
      !/^(\*\.)?[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/.test(
        name,
      ),
  );
  if (bad.length > 0)
    problems.push(`BOARDFLEET_TLS_NAMES: ${bad.join(', ')} is not a DNS name or an IP address`);
  return [...new Set(names)];
}

/** Whether devices need certificates, each problem added to `problems`. */
function readDeviceCertificates(env: Environment, problems: string[]) {
  const mode = env.BOARDFLEET_DEVICE_CERTIFICATES || 'off';
  if (mode !== 'off' && mode !== 'required') {
    problems.push(`BOARDFLEET_DEVICE_CERTIFICATES=${mode} must be off or required`);
    return 'off';
  }
  return mode;
}

/** The broker limits when no variable sets them. */
export const DEFAULT_BROKER_LIMITS: BrokerLimits = readBrokerLimits({}, []);

/** Reads the configuration once, failing with every bad variable listed. */
export function loadServerConfig(env: Environment = process.env): ServerConfig {
  const problems: string[] = [];
  const port = (name: keyof typeof SERVER_ENVIRONMENT): number => {
    const raw = env[name] ?? SERVER_ENVIRONMENT[name].default;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 0 || value > 65535) {
      problems.push(`${name}=${raw} is not a port number (0-65535)`);
      return 0;
    }
    return value;
  };
  const httpPort = port('BOARDFLEET_HTTP_PORT');
  const mqttPort = port('BOARDFLEET_MQTT_PORT');
  const httpsPort = port('BOARDFLEET_HTTPS_PORT');
  const mqttsPort = port('BOARDFLEET_MQTTS_PORT');
  const tlsNames = readTlsNames(env, problems);
  const dataDir = resolve(env.BOARDFLEET_DATA_DIR ?? SERVER_ENVIRONMENT.BOARDFLEET_DATA_DIR.default);
  const databaseUrl = env.DATABASE_URL ?? `sqlite:${resolve(dataDir, 'boardfleet.sqlite')}`;
  if (!/^(sqlite:|postgres:\/\/|postgresql:\/\/)/.test(databaseUrl)) {
    problems.push(`DATABASE_URL=${databaseUrl} must start with sqlite:, postgres:// or postgresql://`);
  }
  const retentionRaw =
    env.BOARDFLEET_HEALTH_RETENTION_DAYS ?? SERVER_ENVIRONMENT.BOARDFLEET_HEALTH_RETENTION_DAYS.default;
  const healthRetentionDays = Number(retentionRaw);
  if (!(healthRetentionDays > 0)) {
    problems.push(`BOARDFLEET_HEALTH_RETENTION_DAYS=${retentionRaw} must be a positive number of days`);
  }
  const { mqttUrl, mqttCredentials } = readExternalBroker(env, problems);
  const deviceCertificates = readDeviceCertificates(env, problems);
  const mqttPublicUrl = env.BOARDFLEET_MQTT_PUBLIC_URL || null;
  if (mqttPublicUrl && !/^mqtts?:\/\//.test(mqttPublicUrl)) {
    problems.push(`BOARDFLEET_MQTT_PUBLIC_URL=${mqttPublicUrl} must start with mqtt:// or mqtts://`);
  }
  const concurrencyRaw =
    env.BOARDFLEET_BUILD_CONCURRENCY ?? SERVER_ENVIRONMENT.BOARDFLEET_BUILD_CONCURRENCY.default;
  const buildConcurrency = Number(concurrencyRaw);
  if (!Number.isInteger(buildConcurrency) || buildConcurrency < 1 || buildConcurrency > 16) {
    problems.push(`BOARDFLEET_BUILD_CONCURRENCY=${concurrencyRaw} must be a whole number from 1 to 16`);
  }
  const webhookRetryRaw =
    env.BOARDFLEET_WEBHOOK_RETRY_SECONDS ?? SERVER_ENVIRONMENT.BOARDFLEET_WEBHOOK_RETRY_SECONDS.default;
  const webhookRetrySeconds = Number(webhookRetryRaw);
  if (!(webhookRetrySeconds > 0 && webhookRetrySeconds <= 3600))
    problems.push(
      `BOARDFLEET_WEBHOOK_RETRY_SECONDS=${webhookRetryRaw} must be a positive number of seconds, at most 3600`,
    );
  const jsonLimitRaw =
    env.BOARDFLEET_HTTP_JSON_LIMIT_KIB ?? SERVER_ENVIRONMENT.BOARDFLEET_HTTP_JSON_LIMIT_KIB.default;
  const httpJsonLimitKib = Number(jsonLimitRaw);
  if (!Number.isInteger(httpJsonLimitKib) || httpJsonLimitKib < 1 || httpJsonLimitKib > 1024 * 1024) {
    problems.push(
      `BOARDFLEET_HTTP_JSON_LIMIT_KIB=${jsonLimitRaw} must be a whole number of KiB from 1 to 1048576`,
    );
  }
  const flag = (name: 'BOARDFLEET_METRICS_PUBLIC' | 'BOARDFLEET_API_DOCS_PUBLIC'): boolean => {
    const raw = env[name] ?? SERVER_ENVIRONMENT[name].default;
    if (raw !== '0' && raw !== '1')
      problems.push(`${name}=${raw} must be 1 (open) or 0 (operator token needed)`);
    return raw !== '0';
  };
  const logLevelRaw = env.LOG_LEVEL ?? SERVER_ENVIRONMENT.LOG_LEVEL.default;
  let logLevel: LogLevel = 'info';
  if (isLogLevel(logLevelRaw)) logLevel = logLevelRaw;
  else problems.push(`LOG_LEVEL=${logLevelRaw} must be one of ${LOG_LEVELS.join(', ')}`);
  const logFormatRaw = env.LOG_FORMAT ?? '';
  let logFormat: LogFormat | undefined;
  if (isLogFormat(logFormatRaw)) logFormat = logFormatRaw;
  else if (logFormatRaw !== '')
    problems.push(`LOG_FORMAT=${logFormatRaw} must be one of ${LOG_FORMATS.join(', ')}`);
  const mqttLimits = readBrokerLimits(env, problems);
  const artifactStore = readArtifactStore(env, problems);
  const deltaUpdatesRaw = env.BOARDFLEET_DELTA_UPDATES || SERVER_ENVIRONMENT.BOARDFLEET_DELTA_UPDATES.default;
  if (deltaUpdatesRaw !== 'on' && deltaUpdatesRaw !== 'off')
    problems.push(`BOARDFLEET_DELTA_UPDATES=${deltaUpdatesRaw} must be on or off`);
  const shell = readShellSettings(env, problems);
  const metricsPublic = flag('BOARDFLEET_METRICS_PUBLIC');
  const apiDocsPublic = flag('BOARDFLEET_API_DOCS_PUBLIC');
  if (problems.length > 0) {
    throw new BoardfleetError('invalid-config', `invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  return {
    httpPort,
    httpHost: env.BOARDFLEET_HTTP_HOST ?? SERVER_ENVIRONMENT.BOARDFLEET_HTTP_HOST.default,
    mqttPort,
    mqttHost: env.BOARDFLEET_MQTT_HOST ?? SERVER_ENVIRONMENT.BOARDFLEET_MQTT_HOST.default,
    httpsPort,
    httpsHost: env.BOARDFLEET_HTTPS_HOST ?? SERVER_ENVIRONMENT.BOARDFLEET_HTTPS_HOST.default,
    mqttsPort,
    mqttsHost: env.BOARDFLEET_MQTTS_HOST ?? SERVER_ENVIRONMENT.BOARDFLEET_MQTTS_HOST.default,
    tlsNames,
    deviceCertificates,
    mqttPublicUrl,
    dataDir,
    databaseUrl,
    mqttUrl,
    mqttCredentials,
    externalBrokerTls:
      mqttUrl === null
        ? null
        : {
            port: env.BOARDFLEET_MQTTS_PORT ? mqttsPort : null,
            pidFile: env.BOARDFLEET_MOSQUITTO_PID_FILE || null,
          },
    healthRetentionDays,
    signingKeyPath: env.BOARDFLEET_SIGNING_KEY ? resolve(env.BOARDFLEET_SIGNING_KEY) : null,
    logLevel,
    logFormat,
    recipesDir: resolve(env.BOARDFLEET_RECIPES_DIR ?? RECIPES_DIRECTORY),
    buildCacheDir: resolve(env.BOARDFLEET_BUILD_CACHE ?? defaultCacheDir(env)),
    buildConcurrency,
    webhookRetrySeconds,
    webDir: resolve(env.BOARDFLEET_WEB_DIR ?? fileURLToPath(new URL('../web/dist', import.meta.url))),
    httpJsonLimitKib,
    metricsPublic,
    apiDocsPublic,
    mqttLimits,
    artifactStore,
    deltaUpdates: deltaUpdatesRaw !== 'off',
    ...shell,
  };
}

function readShellSettings(
  env: Environment,
  problems: string[],
): Pick<ServerConfig, 'shellIdleSeconds' | 'shellTranscripts'> {
  const idleRaw =
    env.BOARDFLEET_SHELL_IDLE_TIMEOUT || SERVER_ENVIRONMENT.BOARDFLEET_SHELL_IDLE_TIMEOUT.default;
  const shellIdleSeconds = Number(idleRaw);
  if (!Number.isInteger(shellIdleSeconds) || shellIdleSeconds < 60 || shellIdleSeconds > 86_400)
    problems.push(
      `BOARDFLEET_SHELL_IDLE_TIMEOUT=${idleRaw} must be a whole number of seconds from 60 to 86400`,
    );
  const transcriptsRaw =
    env.BOARDFLEET_SHELL_TRANSCRIPTS || SERVER_ENVIRONMENT.BOARDFLEET_SHELL_TRANSCRIPTS.default;
  if (transcriptsRaw !== 'on' && transcriptsRaw !== 'off')
    problems.push(`BOARDFLEET_SHELL_TRANSCRIPTS=${transcriptsRaw} must be on or off`);
  return { shellIdleSeconds, shellTranscripts: transcriptsRaw === 'on' };
}
