// Child process of the fleet benchmark: N MQTT clients that heartbeat at a fixed rate.
// Run apart from the server so the server's RSS and CPU are its own.
import mqtt, { type MqttClient } from 'mqtt';
import { deviceTopic } from '../protocol/topics.ts';

interface Plan {
  url: string;
  devices: Array<{ id: string; secret: string }>;
  intervalMs: number;
  durationMs: number;
  connectConcurrency: number;
  /** For mqtts://: the CA the broker's certificate must chain to. */
  ca?: string;
}

const send = (message: object) => process.send?.(message);

function nextMessage<T>(): Promise<T> {
  return new Promise((resolve) => process.once('message', (message) => resolve(message as T)));
}

// The plan comes as the first IPC message: 10,000 devices' credentials are too long for argv.
const plan = await nextMessage<Plan>();

function heartbeat(): string {
  return JSON.stringify({
    at: Date.now(),
    uptimeSeconds: process.uptime(),
    load: [0.1, 0.1, 0.1],
    memory: { totalBytes: 1e9, availableBytes: 5e8 },
    disk: { totalBytes: 8e9, freeBytes: 4e9 },
    cpuTemperatureCelsius: 45,
    agentRssBytes: 3e7,
  });
}

const clients: MqttClient[] = [];
const started = performance.now();
for (let index = 0; index < plan.devices.length; index += plan.connectConcurrency) {
  const batch = plan.devices.slice(index, index + plan.connectConcurrency);
  const connected = await Promise.all(
    batch.map((device) =>
      mqtt.connectAsync(plan.url, {
        protocolVersion: 4,
        ...(plan.ca ? { ca: plan.ca } : {}),
        clientId: device.id,
        username: device.id,
        password: device.secret,
        reconnectPeriod: 0,
        connectTimeout: 60_000,
        keepalive: 60,
      }),
    ),
  );
  clients.push(...connected);
}
send({ type: 'connected', seconds: (performance.now() - started) / 1000 });
// The parent starts counting on the server side first, then says go.
await nextMessage<{ type: 'go' }>();

let published = 0;
const timers = clients.map((client, index) => {
  const topic = deviceTopic(plan.devices[index]!.id, 'health');
  // Spread the devices evenly over the interval, as real fleets drift apart.
  const offset = (index / clients.length) * plan.intervalMs;
  return setTimeout(() => {
    const beat = () => {
      client.publish(topic, heartbeat(), { qos: 0 });
      published++;
    };
    beat();
    timers[index] = setInterval(beat, plan.intervalMs) as unknown as NodeJS.Timeout;
  }, offset);
});

setTimeout(async () => {
  for (const timer of timers) clearInterval(timer);
  send({ type: 'done', published });
  // Forced: heartbeats still queued in a client whose socket the server paused are not waited for.
  await Promise.all(clients.map((client) => client.endAsync(true)));
  process.exit(0);
}, plan.durationMs);
