// Child process of the rollout benchmark: N simulated devices (the real agent code, simulated
// installs). Reports when each first sees a desired deployment.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { DeviceAgent } from '../device-agent/runtime/device-agent.ts';
import { SimulatedUpdates, SyntheticCollectors } from '../device-agent/runtime/simulated-device.ts';

interface Plan {
  serverUrl: string;
  mqttUrl: string;
  fleetPublicKeyPem: string;
  devices: Array<{ id: string; secret: string }>;
}

const plan = JSON.parse(process.argv[2] ?? '{}') as Plan;
const root = mkdtempSync(join(tmpdir(), 'boardfleet-bench-devices-'));
const logger = pino({ level: 'silent' });
const agents: DeviceAgent[] = [];
const notifiedAt = new Map<string, number>();
let online = 0;

for (const device of plan.devices) {
  const dataDir = join(root, device.id);
  mkdirSync(join(dataDir, 'downloads'), { recursive: true });
  let agent: DeviceAgent | null = null;
  const updates = new SimulatedUpdates({
    dataDir: join(dataDir, 'downloads'),
    serverUrl: plan.serverUrl,
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
    updates,
  });
  agent.once('online', () => {
    if (++online === plan.devices.length) process.send?.({ type: 'online' });
  });
  agent.on('desired', (desired) => {
    if (desired.deployment && !notifiedAt.has(device.id)) notifiedAt.set(device.id, Date.now());
  });
  agent.start();
  agents.push(agent);
}

process.on('message', async (message: { type: string }) => {
  if (message.type === 'report') process.send?.({ type: 'notified', at: Object.fromEntries(notifiedAt) });
  if (message.type === 'stop') {
    await Promise.all(agents.map((agent) => agent.stop()));
    process.exit(0);
  }
});
