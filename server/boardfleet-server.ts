import 'reflect-metadata';
import { chmodSync, mkdirSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { dirname, join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { RequestHandler } from 'express';
import { type OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import { sql } from 'kysely';
import { Logger as NestPinoLogger } from 'nestjs-pino';
import type { Logger } from 'pino';
import { createLogger } from '../lib/log-output.ts';
import { openApiDocument } from '../protocol/api/openapi.ts';
import { operations } from '../protocol/api/operations.ts';
import { parseDeviceTopic } from '../protocol/topics.ts';
import { AppModule } from './app.module.ts';
import { ArtifactRepository } from './artifacts/artifact.repository.ts';
import { ArtifactService } from './artifacts/artifact.service.ts';
import { BlobStore } from './artifacts/blob-store.ts';
import { ChunkIndexRepository } from './artifacts/chunk-index.repository.ts';
import { ChunkIndexService } from './artifacts/chunk-index.service.ts';
import { openBlobStore } from './artifacts/open-blob-store.ts';
import { SigningKeyRepository } from './artifacts/signing-key.repository.ts';
import { ensureAdminToken } from './auth/bootstrap-credentials.ts';
import { CLOSED_ROUTES, type ClosableRoute, operatorOnly } from './auth/operator-auth.guard.ts';
import { OperatorAuthenticator } from './auth/operator-authenticator.ts';
import { OperatorSessionRepository } from './auth/operator-session.repository.ts';
import { OperatorTokenRepository } from './auth/operator-token.repository.ts';
import { ServerKeyRepository } from './auth/server-key.repository.ts';
import { BuildJobRepository } from './builds/build-job.repository.ts';
import { BuildQueueService } from './builds/build-queue.service.ts';
import { recipeBuildRunner, validateBuildRequest } from '../builder/builder.ts';
import { AuthRateLimiter, DEVICE_AUTH_LIMITS } from './broker/auth-rate-limiter.ts';
import { DeviceAuthenticator } from './broker/device-authenticator.ts';
import { DEVICE_BROKER } from './broker/device-broker.ts';
import { MQTT_ENDPOINT, MqttEndpoint } from './broker/mqtt-endpoint.ts';
import { openDeviceBroker } from './broker/open-device-broker.ts';
import { ServerMqttClient } from './broker/server-mqtt-client.ts';
import { CLOCK, type Clock, systemClock } from './common/clock.ts';
import { HTTP_LOGGER } from './common/errors.ts';
import { listenOrExplain } from './common/listen.ts';
import { API_DOCS_ROUTE, isApiDocsPath, setSecurityHeaders } from './common/security-headers.ts';
import type { ServerConfig } from './config/config.ts';
import { DATABASE } from './db/database.provider.ts';
import { DatabaseHealth } from './db/database-health.ts';
import { type Database, migrateToLatest, openDatabase } from './db/database.ts';
import { claimSqliteDatabase } from './db/sqlite-owner.ts';
import { joinReplicas } from './cluster/join-replicas.ts';
import { ChangeFeed, openChangeFeed } from './cluster/change-feed.ts';
import {
  ConfigVariablesService,
  configVariablesService,
} from './config-variables/config-variables.service.ts';
import { createLogRelay, LogRelay } from './device-logs/log-relay.ts';
import { DeviceRepository } from './devices/device.repository.ts';
import { ProvisioningTokenRepository } from './devices/provisioning-token.repository.ts';
import { startShellTunnel } from './shell/start-shell-tunnel.ts';
import { ServerMetrics } from './metrics/metrics.ts';
import { ReleaseRepository } from './releases/release.repository.ts';
import { ReleaseService } from './releases/release.service.ts';
import { RolloutRepository } from './rollouts/rollout.repository.ts';
import { RolloutEngine } from './rollouts/rollout-engine.ts';
import { rolloutCluster } from './rollouts/rollout-cluster.ts';
import { TelemetryRepository } from './telemetry/telemetry.repository.ts';
import { TelemetryIngestService } from './telemetry/telemetry-ingest.service.ts';
import { TufService } from './tuf/tuf.service.ts';
import { startWebhooks } from './webhooks/start-webhooks.ts';
import { WebhookEvents } from './webhooks/webhook-events.ts';
import { WEB_DIRECTORY } from './web/web.controller.ts';
import { DeviceCertificateService } from './tls/device-certificate.service.ts';
import { FleetTls, tlsDirectory } from './tls/fleet-tls.ts';

const RETENTION_SWEEP_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
const DATA_DIRECTORY_MODE = 0o700;

export interface RunningServer {
  /** Plain HTTP, on loopback unless configured otherwise. */
  httpUrl: string;
  mqttUrl: string;
  httpPort: number;
  mqttPort: number;
  /** HTTPS with the fleet CA's certificate, at the first of BOARDFLEET_TLS_NAMES. */
  httpsUrl: string;
  httpsPort: number;
  /** MQTT over TLS of the embedded broker; null on an external broker. */
  mqttsUrl: string | null;
  mqttsPort: number | null;
  /** The fleet CA devices pin, and its sha256 fingerprint (hex). */
  caPem: string;
  caFingerprint: string;
  caPath: string;
  adminToken: string;
  adminTokenPath: string;
  db: Database;
  ingest: TelemetryIngestService;
  engine: RolloutEngine;
  metrics: ServerMetrics;
  builds: BuildQueueService;
  stop(): Promise<void>;
}

/**
 * Starts everything in dependency order: database (migrated), the broker (embedded, or Mosquitto
 * at MQTT_URL), the server's own MQTT session, then HTTP. Stops in reverse. A failure part-way
 * stops what had started.
 */
export async function startServer(
  config: ServerConfig,
  options: { logger?: Logger; clock?: Clock } = {},
): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel, config.logFormat);
  const clock = options.clock ?? systemClock;
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) {
      await stop().catch((error: unknown) => logger.error({ err: error }, 'error during shutdown'));
    }
    stops.length = 0;
  };
  try {
    // Secrets, the signing key and the database live here: only the server's user may enter.
    mkdirSync(config.dataDir, { recursive: true, mode: DATA_DIRECTORY_MODE });
    chmodSync(config.dataDir, DATA_DIRECTORY_MODE);
    const sqlitePath = config.databaseUrl.startsWith('sqlite:')
      ? config.databaseUrl.slice('sqlite:'.length)
      : null;
    if (sqlitePath && sqlitePath !== ':memory:') {
      mkdirSync(dirname(sqlitePath), { recursive: true });
      const release = claimSqliteDatabase(sqlitePath, clock.now());
      stops.push(async () => release());
    }
    const databaseHealth = new DatabaseHealth(
      () => sql`select 1`.execute(db),
      logger.child({ component: 'database' }),
    );
    const db = openDatabase(config.databaseUrl, {
      onConnectionLost: (error) => databaseHealth.reportFailure(error),
    });
    stops.push(() => db.destroy());
    await migrateToLatest(db);
    databaseHealth.start();
    stops.push(async () => databaseHealth.stop());

    const metrics = new ServerMetrics();
    const devices = new DeviceRepository(db);
    const telemetry = new TelemetryRepository(db, devices);
    const operatorTokens = new OperatorTokenRepository(db);
    const operatorAuth = new OperatorAuthenticator(operatorTokens, new OperatorSessionRepository(db), clock);
    const provisioningTokens = new ProvisioningTokenRepository(db);
    const admin = await ensureAdminToken(config.dataDir, operatorTokens, clock.now());
    if (admin.created)
      logger.info({ path: admin.path }, `first start: admin API token written to ${admin.path}`);

    const signingKey = SigningKeyRepository.load(config.dataDir, config.signingKeyPath);
    const artifactRepository = new ArtifactRepository(db);
    const tuf = TufService.open(db, artifactRepository, clock, logger.child({ component: 'tuf' }));
    stops.push(tuf.startRefreshing());

    const { registry: replicas } = await joinReplicas(db, config, {
      clock,
      logger: logger.child({ component: 'replicas' }),
      telemetry,
    });
    stops.push(() => replicas.stop());
    const changeFeed = openChangeFeed(
      config.databaseUrl,
      db,
      replicas.id,
      logger.child({ component: 'change-feed' }),
    );
    await changeFeed.start();
    stops.push(() => changeFeed.stop());

    const serverKeys = new ServerKeyRepository(db);
    const fleetTls = await FleetTls.open({
      dataDir: config.dataDir,
      names: config.tlsNames,
      keys: serverKeys,
      clock,
      logger: logger.child({ component: 'tls' }),
    });
    fleetTls.start();
    stops.push(async () => fleetTls.stop());
    warnAboutPlainListeners(config, logger);

    const authenticator = new DeviceAuthenticator(
      devices,
      await serverKeys.loadOrCreate('device-secrets', clock.now()),
      new AuthRateLimiter(DEVICE_AUTH_LIMITS, () => clock.now()),
      metrics,
    );
    const broker = await openDeviceBroker(config, {
      authenticator,
      devices,
      metrics,
      tls: fleetTls,
      logger: logger.child({ component: 'broker' }),
    });
    stops.push(() => broker.stop());
    const mqttPort = broker.devicePort();
    const mqttsPort = broker.deviceTlsPort();
    const serverSession = broker.serverSession();

    const ingest = new TelemetryIngestService(
      telemetry,
      metrics,
      databaseHealth,
      logger.child({ component: 'ingest' }),
      () => clock.now(),
    );
    stops.push(() => ingest.stop());
    const deviceCertificates = new DeviceCertificateService({
      mode: config.deviceCertificates,
      ca: fleetTls,
      devices,
      // Renewals arrive through the session below, once it has started.
      publish: (deviceId, message) =>
        mqttClient.publishToDevice(deviceId, 'certificate', message, { retain: false }),
      clock,
      metrics,
      logger: logger.child({ component: 'device-certificates' }),
    });
    const shell = startShellTunnel({
      db,
      config,
      clock,
      authenticator: operatorAuth,
      devices,
      metrics,
      variables: (deviceId) => configVariables.effectiveVariables(deviceId),
      publish: (deviceId, input) =>
        mqttClient.publishToDevice(deviceId, 'shell-input', input, { retain: false }),
      logger: logger.child({ component: 'shell' }),
    });
    const logRelay = createLogRelay({
      mqtt: () => mqttClient,
      clock,
      metrics,
      logger: logger.child({ component: 'logs' }),
    });
    const mqttClient = new ServerMqttClient({
      url: serverSession.url,
      username: serverSession.username,
      secret: serverSession.password,
      sharedGroup: serverSession.sharedGroup,
      metrics,
      logger: logger.child({ component: 'mqtt' }),
      onDeviceMessage: (topic, payload) => {
        const parsed = parseDeviceTopic(topic);
        if (parsed?.channel === 'certificate-request')
          void deviceCertificates.renew(parsed.deviceId, payload);
        else if (parsed?.channel === 'shell-output') shell.receive(parsed.deviceId, payload);
        else if (parsed?.channel === 'logs') logRelay.receive(parsed.deviceId, payload);
        else ingest.handleMessage(topic, payload);
      },
    });
    await mqttClient.start();
    stops.push(() => mqttClient.stop());
    stops.push(() => broker.disconnectDevices());

    const releaseService = new ReleaseService(new ReleaseRepository(db), artifactRepository, clock);
    const rolloutRepository = new RolloutRepository(db);
    // A change of variables reissues desired states through the engine, which writes them all.
    const configVariables = configVariablesService(db, devices, clock, (ids) => engine.reissueConfig(ids));
    const engine = new RolloutEngine({
      configs: configVariables,
      rollouts: rolloutRepository,
      devices,
      releases: releaseService,
      mqtt: mqttClient,
      clock,
      logger: logger.child({ component: 'rollouts' }),
      database: databaseHealth,
      ...rolloutCluster(db, config.databaseUrl, { id: replicas.id, clock }),
      replicas,
      brokerKeepsRetained: config.mqttUrl !== null,
      // An aborted rollout's rollback is signed in targets.json before devices are sent back.
      rollbackOrders: {
        sign: async (id, order) => {
          if ((await tuf.status()).root === null) return;
          await tuf.issueRollbackOrder({ device: null, ...order }, id);
        },
      },
    });
    ingest.on('device-event', (deviceId, event) => engine.onDeviceEvent(deviceId, event));
    ingest.on('presence-changed', (deviceId, online) => engine.onPresence(deviceId, online));
    ingest.on('presence-changed', (deviceId, online) => shell.presenceChanged(deviceId, online));
    ingest.on('presence-changed', (deviceId, online) => logRelay.presenceChanged(deviceId, online));
    mqttClient.onReconnect(() => engine.brokerReconnected());
    mqttClient.onDisconnect(() => engine.brokerLost());
    await engine.start();
    stops.push(() => engine.stop());
    const webhooks = startWebhooks({
      db,
      ingest,
      engine,
      rollouts: rolloutRepository,
      telemetry,
      clock,
      logger: logger.child({ component: 'webhooks' }),
      retryBaseSeconds: config.webhookRetrySeconds,
    });
    stops.push(() => webhooks.stop());

    const sweepRetention = async () => {
      const deleted = await telemetry.deleteHealthBefore(clock.now() - config.healthRetentionDays * DAY_MS);
      if (deleted > 0) logger.info({ deleted }, 'old health samples deleted');
    };
    await sweepRetention();
    const retentionTimer = setInterval(
      () =>
        void sweepRetention().catch((error: unknown) =>
          logger.error({ err: error }, 'retention sweep failed'),
        ),
      RETENTION_SWEEP_MS,
    );
    retentionTimer.unref();
    stops.push(async () => clearInterval(retentionTimer));

    const blobStore = await openBlobStore(config.artifactStore, config.dataDir);
    stops.push(() => blobStore.close());
    const chunkIndexes = new ChunkIndexService({
      indexes: new ChunkIndexRepository(db),
      blobs: blobStore,
      signingKey,
      clock,
      enabled: config.deltaUpdates,
      logger: logger.child({ component: 'chunk-indexes' }),
    });
    const builds = new BuildQueueService({
      jobs: new BuildJobRepository(db),
      artifacts: new ArtifactService(artifactRepository, blobStore, signingKey, clock, chunkIndexes),
      runner: recipeBuildRunner({ recipesDir: config.recipesDir, cacheDir: config.buildCacheDir }),
      validate: (request) => validateBuildRequest(config.recipesDir, request),
      logDirectory: join(config.dataDir, 'builds'),
      concurrency: config.buildConcurrency,
      clock,
      logger: logger.child({ component: 'builds' }),
      replicas,
      soleServer: config.databaseUrl.startsWith('sqlite:'),
    });
    await builds.start();
    stops.push(() => builds.stop());

    const closedRoutes = new Set<ClosableRoute>(config.metricsPublic ? [] : ['metrics']);
    const app = await NestFactory.create<NestExpressApplication>(
      AppModule.forRoot({
        logger,
        values: [
          { provide: DATABASE, useValue: db },
          { provide: DatabaseHealth, useValue: databaseHealth },
          { provide: CLOCK, useValue: clock },
          { provide: ServerMetrics, useValue: metrics },
          { provide: DeviceRepository, useValue: devices },
          { provide: TelemetryRepository, useValue: telemetry },
          { provide: OperatorTokenRepository, useValue: operatorTokens },
          { provide: OperatorAuthenticator, useValue: operatorAuth },
          { provide: ProvisioningTokenRepository, useValue: provisioningTokens },
          { provide: DeviceAuthenticator, useValue: authenticator },
          { provide: DEVICE_BROKER, useValue: broker },
          { provide: ServerMqttClient, useValue: mqttClient },
          { provide: ArtifactRepository, useValue: artifactRepository },
          { provide: TufService, useValue: tuf },
          { provide: ReleaseService, useValue: releaseService },
          { provide: RolloutRepository, useValue: rolloutRepository },
          { provide: RolloutEngine, useValue: engine },
          { provide: ConfigVariablesService, useValue: configVariables },
          { provide: BlobStore, useValue: blobStore },
          { provide: ChunkIndexService, useValue: chunkIndexes },
          { provide: BuildQueueService, useValue: builds },
          { provide: ChangeFeed, useValue: changeFeed },
          { provide: SigningKeyRepository, useValue: signingKey },
          {
            provide: MQTT_ENDPOINT,
            useValue: new MqttEndpoint(config.mqttPublicUrl, { plain: mqttPort, tls: mqttsPort }),
          },
          { provide: FleetTls, useValue: fleetTls },
          { provide: DeviceCertificateService, useValue: deviceCertificates },
          { provide: LogRelay, useValue: logRelay },
          { provide: TelemetryIngestService, useValue: ingest },
          { provide: WebhookEvents, useValue: webhooks.events },
          { provide: WEB_DIRECTORY, useValue: config.webDir },
          { provide: CLOSED_ROUTES, useValue: closedRoutes },
          { provide: HTTP_LOGGER, useValue: logger.child({ component: 'http' }) },
        ],
      }),
      // The JSON parser is added below with an explicit limit; form bodies are never parsed.
      { bufferLogs: true, abortOnError: false, bodyParser: false },
    );
    app.useLogger(app.get(NestPinoLogger));
    app.enableShutdownHooks();
    app.disable('x-powered-by');
    app.use(setSecurityHeaders);
    app.useBodyParser('json', { limit: config.httpJsonLimitKib * 1024 });
    mountOpenApi(app, config.apiDocsPublic ? null : operatorOnly(operatorAuth));
    await app.init();
    const httpServer = app.getHttpServer();
    stops.push(() => app.close());
    await listenOrExplain(httpServer, config.httpPort, config.httpHost, 'BOARDFLEET_HTTP_PORT', 'HTTP');
    const httpPort = (httpServer.address() as AddressInfo).port;
    const httpsServer = await listenHttps(app, fleetTls, config);
    stops.push(() => closeHttps(httpsServer));
    const httpsPort = (httpsServer.address() as AddressInfo).port;
    shell.listen(httpServer, httpsServer);
    stops.push(() => shell.stop());
    const shownHost = config.httpHost === '0.0.0.0' ? 'localhost' : config.httpHost;
    const tlsHost = urlHost(config.tlsNames[0] ?? 'localhost');
    const caPath = join(tlsDirectory(config.dataDir), 'ca.pem');
    logger.info(
      {
        httpPort,
        httpsPort,
        mqttPort,
        mqttsPort,
        dataDir: config.dataDir,
        caFingerprint: fleetTls.caFingerprint,
      },
      `Boardfleet server on https://${tlsHost}:${httpsPort} (fleet CA ${caPath}), plain http://${shownHost}:${httpPort}`,
    );
    return {
      httpUrl: `http://${shownHost}:${httpPort}`,
      mqttUrl: config.mqttUrl ?? `mqtt://${shownHost}:${mqttPort}`,
      httpPort,
      mqttPort,
      httpsUrl: `https://${tlsHost}:${httpsPort}`,
      httpsPort,
      mqttsUrl: mqttsPort === null ? null : `mqtts://${tlsHost}:${mqttsPort}`,
      mqttsPort,
      caPem: fleetTls.caPem,
      caFingerprint: fleetTls.caFingerprint,
      caPath,
      adminToken: admin.token,
      adminTokenPath: admin.path,
      db,
      ingest,
      engine,
      metrics,
      builds,
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** The same application over TLS; a renewed certificate is taken without a restart. */
async function listenHttps(app: INestApplication, tls: FleetTls, config: ServerConfig): Promise<HttpsServer> {
  const server = createHttpsServer(tls.secureContext(), app.getHttpAdapter().getInstance());
  tls.onRenewed((context) => server.setSecureContext(context));
  await listenOrExplain(server, config.httpsPort, config.httpsHost, 'BOARDFLEET_HTTPS_PORT', 'HTTPS');
  tls.servingHttpsOn((server.address() as AddressInfo).port);
  return server;
}

async function closeHttps(server: HttpsServer): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** Plain listeners opened to the network are the operator's choice, but one to be reminded of. */
function warnAboutPlainListeners(config: ServerConfig, logger: Logger): void {
  if (!LOOPBACK.has(config.httpHost))
    logger.warn(
      { host: config.httpHost, port: config.httpPort },
      `plain HTTP listens on ${config.httpHost} (BOARDFLEET_HTTP_HOST): operator tokens and device secrets sent to it travel in clear; HTTPS is on port ${config.httpsPort}`,
    );
  if (config.mqttUrl === null && !LOOPBACK.has(config.mqttHost))
    logger.warn(
      { host: config.mqttHost, port: config.mqttPort },
      `plain MQTT listens on ${config.mqttHost} (BOARDFLEET_MQTT_HOST): device secrets sent to it travel in clear; MQTT over TLS is on port ${config.mqttsPort}`,
    );
}

/** A host name or address as it goes in a URL (IPv6 in brackets). */
function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * The OpenAPI document, generated from the operations table, and the Swagger UI that shows it;
 * behind `gate` (an operator token check) when the configuration closed them.
 */
function mountOpenApi(app: INestApplication, gate: RequestHandler | null): void {
  if (gate) {
    const docsOnly: RequestHandler = (request, response, next) =>
      isApiDocsPath(request.path) ? gate(request, response, next) : next();
    app.use(docsOnly);
  }
  const document = openApiDocument(operations, {
    title: 'Boardfleet',
    version: '1.0.0',
    description: 'Fleet manager for maker and embedded devices. Authenticate with an operator token.',
  });
  SwaggerModule.setup(API_DOCS_ROUTE, app, document as unknown as OpenAPIObject, {
    jsonDocumentUrl: `${API_DOCS_ROUTE}/openapi.json`,
  });
}
