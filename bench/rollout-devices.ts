// Child process of the rollout benchmark: N simulated devices (the real agent code, simulated
// installs). Reports when each first sees a desired deployment.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { type DeploymentApplier, DeviceAgent } from '../device-agent/runtime/device-agent.ts';
import {
  SimulatedConfig,
  SimulatedUpdates,
  SyntheticCollectors,
} from '../device-agent/runtime/simulated-device.ts';

export interface RolloutDevicesPlan {
  /** Device i downloads from serverUrls[i % length]: replicas behind a load balancer. */
  serverUrls: string[];
  mqttUrl: string;
  fleetPublicKeyPem: string;
  devices: Array<{ id: string; secret: string }>;
}

export type RolloutDevicesMessage = { type: 'online' } | { type: 'notified'; at: Record<string, number> };

const STOP_DEADLINE_MS = 30_000;

/**
 * Installs (download, verify, report) in progress at once across the simulated fleet. Real
 * devices install on their own CPUs; here one process stands in for 10,000 of them on the cores
 * the server and the broker use too, and thousands of installs at once starved its reading of
 * the desired states still arriving (the fan-out measured): at 2,000 the p99 was twice as long as
 * at 100, and the rollout no faster. The others wait their turn, notified already.
 */
const MAX_CONCURRENT_INSTALLS = 100;
let installing = 0;
const waitingInstalls: Array<() => void> = [];

function oneOfLimitedInstalls(updates: DeploymentApplier): DeploymentApplier {
  return {
    get current() {
      return updates.current;
    },
    async apply(deployment) {
      // A finished install hands its slot to the next waiting one.
      if (installing < MAX_CONCURRENT_INSTALLS) installing++;
      else await new Promise<void>((resolve) => waitingInstalls.push(resolve));
      try {
        await updates.apply(deployment);
      } finally {
        const next = waitingInstalls.shift();
        if (next) next();
        else installing--;
      }
    },
    stop: () => updates.stop(),
  };
}

function nextMessage<T>(): Promise<T> {
  return new Promise((resolve) => process.once('message', (message) => resolve(message as T)));
}
const send = (message: RolloutDevicesMessage) => process.send?.(message);

// The plan comes over IPC: 10,000 devices' credentials are too long for argv (E2BIG).
const plan = await nextMessage<RolloutDevicesPlan>();
// The agents' state files are fsynced on every change: in memory, 10,000 simulated disks cost
// this process no disk waits (what is measured is the server, not this machine's disk).
const root = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'boardfleet-bench-devices-'));
const logger = pino({ level: 'silent' });
const agents: DeviceAgent[] = [];
const notifiedAt = new Map<string, number>();
let online = 0;

for (const [index, device] of plan.devices.entries()) {
  const dataDir = join(root, device.id);
  mkdirSync(join(dataDir, 'downloads'), { recursive: true });
  let agent: DeviceAgent | null = null;
  const config = new SimulatedConfig(dataDir, logger);
  const updates = new SimulatedUpdates({
    dataDir: join(dataDir, 'downloads'),
    serverUrl: plan.serverUrls[index % plan.serverUrls.length]!,
    auth: { deviceId: device.id, secret: device.secret },
    fleetPublicKeyPem: plan.fleetPublicKeyPem,
    report: ({ deploymentId, state, reason }) =>
      agent?.recordEvent('deployment', { state }, { deploymentId, ...(reason ? { message: reason } : {}) }),
  });
  agent = new DeviceAgent({
    deviceId: device.id,
    secret: device.secret,
    mqttUrls: [plan.mqttUrl],
    dataDir,
    heartbeatSeconds: 30,
    keepaliveSeconds: 60,
    collectors: new SyntheticCollectors(device.id, 'rpi-4b', '0.1.0'),
    logger,
    updates: oneOfLimitedInstalls(updates),
    appliedConfigHash: config.appliedConfigHash,
  });
  config.follow(agent);
  agent.once('online', () => {
    if (++online === plan.devices.length) send({ type: 'online' });
  });
  agent.on('desired', (desired) => {
    if (desired.deployment && !notifiedAt.has(device.id)) notifiedAt.set(device.id, Date.now());
  });
  agent.start();
  agents.push(agent);
}

process.on('message', async (message: { type: 'report' | 'stop' }) => {
  if (message.type === 'report') send({ type: 'notified', at: Object.fromEntries(notifiedAt) });
  if (message.type === 'stop') {
    // A stop waits for the agent's last publishes; one whose connection closed under it may wait
    // for good, and must not keep the benchmark from ending.
    let stopped = 0;
    const all = Promise.all(agents.map((agent) => agent.stop().then(() => stopped++)));
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((resolve) => (deadline = setTimeout(resolve, STOP_DEADLINE_MS)))]);
    clearTimeout(deadline);
    if (stopped < agents.length)
      process.stderr.write(
        `  ${agents.length - stopped} of ${agents.length} simulated devices had not stopped after ${STOP_DEADLINE_MS / 1000} s\n`,
      );
    rmSync(root, { recursive: true, force: true });
    process.exit(0);
  }
});
