/**
 * The agent's composition root: from its configuration to a running agent. `boardfleet agent`
 * (cli/commands/agent.command.ts) and the agent inside images (image-entry.ts) both start here.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import packageJson from '../package.json' with { type: 'json' };
import { createLogger } from '../lib/log-output.ts';
import { splitProvisioningToken } from '../protocol/api/provisioning.ts';
import { appEnvironment } from '../protocol/device-config.ts';
import { BoardfleetError } from '../protocol/errors.ts';
import { type AgentConfig, loadAgentConfig } from './agent-config.ts';
import {
  type AgentCredentials,
  fetchDeviceCertificate,
  fetchFleetKey,
  fetchMqttUrl,
  loadCredentials,
  provisionDevice,
  saveCredentials,
} from './lib/credentials.ts';
import {
  certificateRequest,
  deviceKey,
  PROVISIONING_SUBJECT,
  saveDeviceCertificate,
} from './lib/device-certificate.ts';
import { rebootDevice } from './lib/device-reboot.ts';
import { catchUpWithServerClock } from './lib/server-clock.ts';
import { establishServerTrust, type ServerTrust } from './lib/server-trust.ts';
import { CertificateRenewal } from './runtime/certificate-renewal.ts';
import { SystemCollectors } from './runtime/collectors.ts';
import { DeviceAgent } from './runtime/device-agent.ts';
import { activationGate } from './update/activation-gate.ts';
import { AppliedConfig, DeviceConfigStore } from './runtime/device-config.ts';
import { ShellSessions } from './shell/shell-sessions.ts';
import { AgentLogTee } from './logs/agent-log-tee.ts';
import { startDeviceLogs } from './logs/device-logs.ts';
import { AppBundleStrategy } from './update/app-bundle.strategy.ts';
import { LinuxAbStrategy } from './update/linux-ab.strategy.ts';
import type { McuSerialStrategy } from './update/mcu-serial.strategy.ts';
import type { AttachedBoardAccess } from '../mcu/attached-board.ts';
import { FleetMetadata } from './update/fleet-metadata.ts';
import { UpdateManager } from './update/update-manager.ts';
import type { UpdateState } from './update/update-state-machine.ts';
import { VmStrategy } from './update/vm.strategy.ts';
import { OciStrategy } from './update/oci/oci.strategy.ts';
import { ConsoleUploader } from './vm/console-uploader.ts';

/**
 * Runs the agent as its process's one job: the configuration (a JSON file, `flags` winning over
 * it) checked once, a pino logger at `LOG_LEVEL`, and on SIGTERM or SIGINT a goodbye to the broker
 * (presence goes offline at once) before the process exits, ahead of a supervisor's SIGKILL.
 */
export async function startAgentProcess(
  flags: Record<string, unknown>,
  configFile?: string,
): Promise<DeviceAgent> {
  const config = loadAgentConfig(
    { logLevel: process.env.LOG_LEVEL, logFormat: process.env.LOG_FORMAT || undefined, ...flags },
    configFile,
  );
  const agentLog = new AgentLogTee();
  const logger = createLogger(config.logLevel, config.logFormat, agentLog);
  const agent = await runAgent(config, logger, { agentLog });
  const shutdown = () => {
    void agent.stop().then(() => {
      logger.info('agent stopped');
      process.exit(0);
    });
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  return agent;
}

/**
 * Credentials kept in the data dir, else the ones given, else provisioning with a fleet token.
 * With `force`, the kept ones are replaced by the given or newly provisioned ones. Their MQTT URL
 * is the server's (or the first `--mqtt`); kept ones learn it again, see `withCurrentMqttUrl`.
 */
async function obtainCredentials(
  config: AgentConfig,
  trust: ServerTrust,
  logger: Logger,
): Promise<AgentCredentials> {
  const dataDir = resolve(config.dataDir);
  const stored = config.force ? null : loadCredentials(dataDir);
  if (stored) {
    refuseIgnoredCredentials(stored, config, dataDir);
    return config.mqtt.length > 0
      ? stored
      : withCurrentMqttUrl(stored, trust, config.server, dataDir, logger);
  }
  let credentials: AgentCredentials;
  if (config.deviceId && config.secret) {
    credentials = {
      schemaVersion: 1,
      deviceId: config.deviceId,
      secret: config.secret,
      mqttUrl:
        config.mqtt[0] ??
        (await fetchMqttUrl(trust.fetch, config.server, {
          deviceId: config.deviceId,
          secret: config.secret,
        })),
      fleetPublicKeyPem: await fetchFleetKey(trust.fetch, config.server),
      provisioningTokenSha256: null,
    };
  } else if (config.provisioningToken) {
    const provisioned = await provisionDevice({
      fetch: trust.fetch,
      serverUrl: config.server,
      provisioningToken: config.provisioningToken,
      name: config.name,
      ...(config.board ? { board: config.board } : {}),
      tags: config.tags,
      // Always sent: the agent cannot tell beforehand whether the fleet requires certificates.
      csr: await certificateRequest(deviceKey(dataDir), PROVISIONING_SUBJECT),
    });
    credentials = provisioned.credentials;
    credentials.provisioningTokenSha256 = tokenFingerprint(config.provisioningToken);
    if (provisioned.certificatePem) saveDeviceCertificate(dataDir, provisioned.certificatePem);
  } else {
    throw new BoardfleetError(
      'no-credentials',
      `no credentials in ${dataDir}: give --device-id with --secret-file (or BOARDFLEET_SECRET), ` +
        'or --provisioning-token-file (or BOARDFLEET_PROVISIONING_TOKEN)',
    );
  }
  saveCredentials(dataDir, credentials);
  return credentials;
}

/**
 * Stops rather than silently run as the stored device when the flags ask for another one: a
 * provisioning token other than the one the stored credentials came from, or another device id.
 * The same token again is fine (an image passes it on every boot); credentials saved before
 * the token was recorded (`undefined`) cannot tell, and are kept.
 */
function refuseIgnoredCredentials(stored: AgentCredentials, config: AgentConfig, dataDir: string): void {
  const recorded = stored.provisioningTokenSha256;
  const otherToken =
    config.provisioningToken !== undefined &&
    recorded !== undefined &&
    recorded !== tokenFingerprint(config.provisioningToken);
  const otherDevice = config.deviceId !== undefined && config.deviceId !== stored.deviceId;
  if (!otherToken && !otherDevice) return;
  throw new BoardfleetError(
    'invalid-config',
    `${dataDir} already holds the credentials of device ${stored.deviceId}, so the ` +
      `${otherToken ? 'provisioning token and name' : `device id ${config.deviceId}`} would be ignored: ` +
      'give another --data-dir, or --force to replace them',
  );
}

const tokenFingerprint = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * The kept credentials with the MQTT URL the server names now, saved when it changed: the broker
 * may have moved (another BOARDFLEET_MQTT_PORT, or Mosquitto, which the server registers the
 * device with as it answers), and agents before this one saved a guess (`mqtt://<server
 * host>:1883`) that can lead to somebody else's broker. A server that cannot be asked leaves the
 * URL it named last; if that is not its broker, the agent says so on connecting.
 */
async function withCurrentMqttUrl(
  stored: AgentCredentials,
  trust: ServerTrust,
  server: string,
  dataDir: string,
  logger: Logger,
): Promise<AgentCredentials> {
  let mqttUrl: string;
  try {
    mqttUrl = await fetchMqttUrl(trust.fetch, server, stored);
  } catch (error) {
    logger.warn(
      { mqttUrl: stored.mqttUrl },
      `cannot ask ${server} where its broker is (${(error as Error).message}); trying ${stored.mqttUrl}, where it was last`,
    );
    return stored;
  }
  if (mqttUrl === stored.mqttUrl) return stored;
  logger.info(
    { mqttUrl, was: stored.mqttUrl },
    `the server's broker is at ${mqttUrl} (was ${stored.mqttUrl})`,
  );
  const updated = { ...stored, mqttUrl };
  saveCredentials(dataDir, updated);
  return updated;
}

/**
 * Asks the server where its broker is, as the device (so the server registers it with that
 * broker), and keeps a changed answer for the next start.
 */
function brokerLocator(
  trust: ServerTrust,
  server: string,
  dataDir: string,
  credentials: AgentCredentials,
): () => Promise<string> {
  let kept = credentials;
  return async () => {
    const mqttUrl = await fetchMqttUrl(trust.fetch, server, kept);
    if (mqttUrl !== kept.mqttUrl) {
      kept = { ...kept, mqttUrl };
      saveCredentials(dataDir, kept);
    }
    return mqttUrl;
  };
}

/**
 * Builds the agent from its configuration and starts it: credentials (stored, given, or
 * provisioned), the update strategies this device has, the update manager, the collectors and the
 * MQTT session.
 */
export async function runAgent(
  config: AgentConfig,
  logger: Logger,
  options: { agentLog?: AgentLogTee } = {},
): Promise<DeviceAgent> {
  const dataDir = resolve(config.dataDir);
  const appRoot = resolve(dataDir, 'app');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const trust = await establishServerTrust({
    serverUrl: config.server,
    dataDir,
    ...(config.ca ? { caFile: config.ca } : {}),
    pin: config.provisioningToken ? splitProvisioningToken(config.provisioningToken).caFingerprint : null,
    logger,
  });
  // Before the first verified request: a board without a real-time clock finds certificates "not yet valid".
  await catchUpWithServerClock({ serverUrl: config.server, ca: trust.ca, logger });
  const credentials = await obtainCredentials(config, trust, logger);
  const version = packageJson.version;
  let agent: DeviceAgent | null = null;
  const deviceConfig = new DeviceConfigStore(dataDir);
  const shell = new ShellSessions({
    publish: async (message) => (await agent?.publish('shell-output', message)) ?? false,
    variables: () => deviceConfig.variables,
    logger: logger.child({ component: 'shell' }),
    dataDir,
  });
  const logs = startDeviceLogs({
    dataDir,
    ...options,
    publish: async (batch) => (await agent?.publish('logs', batch)) ?? false,
    appRoot,
    vms: () => vms,
    logger: logger.child({ component: 'logs' }),
  });
  const attachedBoard = config.attachedBoard
    ? await attachedBoardStrategy(dataDir, config.attachedBoard, logger, logs.captureBoard)
    : null;
  const slots = linuxAbStrategy(config, dataDir, () => agent?.connected ?? false, logger);
  const vms = vmStrategy(config, dataDir, credentials, trust, logger, logs.vmConsole);
  const apps = new AppBundleStrategy(
    appRoot,
    (line, origin) => {
      logger.info({ app: true }, line);
      logs.appOutput(line, origin);
    },
    () => appEnvironment(deviceConfig.variables),
  );
  const containers = new OciStrategy({
    root: resolve(dataDir, 'oci'),
    privateParent: dataDir,
    onOutput: (line, origin) => {
      logger.info({ app: true }, line);
      logs.appOutput(line, origin);
    },
    configEnvironment: () => appEnvironment(deviceConfig.variables),
  });
  // The hash reported once the app restarted with a new configuration (no reboot, no release).
  const appliedConfig = new AppliedConfig(deviceConfig, {
    restart: async () => {
      await apps.restartWithConfig();
      await containers.restartWithConfig();
    },
    applied: () => agent?.refreshInventory(),
    logger: logger.child({ component: 'config' }),
  });
  const updates: UpdateManager = new UpdateManager({
    dataDir,
    activationGate: activationGate({
      lockFile: resolve(config.updateLock ?? join(dataDir, 'update.lock')),
      ...(config.updateWindow ? { window: config.updateWindow } : {}),
    }),
    serverUrl: config.server,
    fetch: trust.fetch,
    signedTargets: new FleetMetadata({
      dataDir,
      serverUrl: config.server,
      fetch: trust.fetch,
      deviceId: credentials.deviceId,
      logger: logger.child({ component: 'tuf' }),
    }),
    auth: { deviceId: credentials.deviceId, secret: credentials.secret },
    fleetPublicKeyPem: credentials.fleetPublicKeyPem,
    strategies: {
      'app-bundle': apps,
      oci: containers,
      ...(attachedBoard ? { 'mcu-serial': attachedBoard } : {}),
      ...(slots ? { 'linux-ab': slots } : {}),
      ...(vms ? { vm: vms } : {}),
    },
    report: ({ deploymentId, state, progress, reason, transfer }) =>
      agent?.recordEvent(
        'deployment',
        { state, ...(progress !== undefined ? { progress } : {}), ...(transfer ? { transfer } : {}) },
        { deploymentId, ...(reason ? { message: reason } : {}) },
      ),
    logger: logger.child({ component: 'updates' }),
    afterSave: pauseAtUpdateStateTestHook(
      process.env.BOARDFLEET_TEST_PAUSE_AT_UPDATE_STATE,
      (): UpdateManager => updates,
    ),
  });
  agent = new DeviceAgent({
    deviceId: credentials.deviceId,
    secret: credentials.secret,
    ...(config.mqtt.length > 0
      ? { mqttUrls: config.mqtt }
      : {
          mqttUrls: [credentials.mqttUrl],
          locateBroker: brokerLocator(trust, config.server, dataDir, credentials),
        }),
    ca: trust.ca,
    certificate: deviceCertificate(dataDir, credentials, trust, config.server, logger),
    dataDir,
    heartbeatSeconds: config.heartbeat,
    keepaliveSeconds: config.keepalive,
    helloTimeoutSeconds: config.helloTimeout,
    collectors: new SystemCollectors(dataDir, version, config.board ?? null),
    logger,
    updates,
    ...(attachedBoard ? { attachedBoards: () => [attachedBoard.describe()] } : {}),
    appliedConfigHash: () => appliedConfig.hash,
    conversations: {
      'shell-input': (message) => shell.receive(message),
      'log-watch': (message) => logs.streamer.handle(message),
    },
  });
  // Also on stop, which closes the connection: no shell outlives the agent's link to the server.
  agent.on('offline', () => shell.stopAll('device went offline'));
  agent.on('desired', (desired) => deviceConfig.apply(desired.config));
  // Resuming is queued before the first desired state can arrive, and not awaited: a health
  // check after a reboot waits for this agent to connect.
  void updates.start();
  agent.start();
  return agent;
}

/** The device's certificate, for fleets that require one: kept in the data dir, renewed by the agent. */
function deviceCertificate(
  dataDir: string,
  credentials: AgentCredentials,
  trust: ServerTrust,
  server: string,
  logger: Logger,
): CertificateRenewal {
  return new CertificateRenewal({
    dataDir,
    deviceId: credentials.deviceId,
    ca: trust.ca,
    fetchCertificate: (csr) => fetchDeviceCertificate(trust.fetch, server, credentials, csr),
    logger: logger.child({ component: 'device-certificate' }),
  });
}

/** A/B root slots, in a Boardfleet Linux image (where the slots file exists); else none. */
function linuxAbStrategy(
  config: AgentConfig,
  dataDir: string,
  connected: () => boolean,
  logger: Logger,
): LinuxAbStrategy | null {
  const { linuxAb } = config;
  if (!existsSync(linuxAb.slotsFile)) return null;
  return new LinuxAbStrategy({
    bootDir: linuxAb.bootDir,
    slotsFile: linuxAb.slotsFile,
    cmdlineFile: linuxAb.cmdlineFile,
    bootIdFile: linuxAb.bootIdFile,
    stateDir: dataDir,
    board: config.board ?? null,
    reboot: (mode) => rebootDevice(mode),
    connected,
    healthTimeoutSeconds: linuxAb.healthTimeoutSeconds,
    log: (line) => logger.info({ slots: true }, line),
  });
}

/** Unikernel images as VMs, when the config has a `vm` section; else none. */
function vmStrategy(
  config: AgentConfig,
  dataDir: string,
  credentials: AgentCredentials,
  trust: ServerTrust,
  logger: Logger,
  consoleLine: (artifact: string, line: string) => void,
): VmStrategy | null {
  if (!config.vm) return null;
  return new VmStrategy({
    root: resolve(dataDir, 'vm'),
    publish: config.vm.publish,
    accelerator: config.vm.accelerator,
    readyTimeoutSeconds: config.vm.readyTimeoutSeconds,
    env: config.vm.env,
    consoles: new ConsoleUploader({
      fetch: trust.fetch,
      server: config.server,
      deviceId: credentials.deviceId,
      secret: credentials.secret,
      logger: logger.child({ component: 'vm-consoles' }),
    }),
    log: (line) => logger.info({ vm: true }, line),
    consoleLine,
  });
}

/**
 * The attached board's strategy, imported only when a board is configured: the serial port
 * code needs `serialport`, a native module a Linux image's bundled agent does not carry.
 */
async function attachedBoardStrategy(
  dataDir: string,
  attached: NonNullable<AgentConfig['attachedBoard']>,
  logger: Logger,
  /** Shares the port with the live logs' serial capture. */
  shared: (access: AttachedBoardAccess) => AttachedBoardAccess,
): Promise<McuSerialStrategy> {
  const [{ serialAttachedBoard }, { McuSerialStrategy }] = await Promise.all([
    import('../mcu/attached-board.ts'),
    import('./update/mcu-serial.strategy.ts'),
  ]);
  return new McuSerialStrategy(
    resolve(dataDir, 'mcu'),
    shared(serialAttachedBoard(attached.board, attached.port)),
    (line) => logger.info({ attachedBoard: true }, line),
  );
}

/**
 * Test hook for the end-to-end tests, unset in production: with
 * BOARDFLEET_TEST_PAUSE_AT_UPDATE_STATE=<state>@<version> the agent freezes its whole event loop
 * right after it has saved that state for that version (nothing after the save runs, not even
 * sending the report), and says so on stderr, so a test can kill -9 it at exactly that point.
 */
function pauseAtUpdateStateTestHook(
  setting: string | undefined,
  updates: () => UpdateManager,
): ((saved: UpdateState) => void) | undefined {
  if (!setting) return undefined;
  const [state, version] = setting.split('@');
  return (saved) => {
    if (saved !== state || updates().current.deployment?.version !== version) return;
    writeSync(2, `test hook: paused at update state ${saved}\n`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  };
}
