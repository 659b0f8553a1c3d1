import mqtt from 'mqtt';
import type { DeviceEventHistory } from '../../protocol/api/devices.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { deviceTopic } from '../../protocol/topics.ts';
import { ensureServerMqttSecret } from '../../server/auth/bootstrap-credentials.ts';
import { SERVER_MQTT_USERNAME } from '../../server/broker/embedded-broker.ts';
import { RolloutRepository } from '../../server/rollouts/rollout.repository.ts';
import { sendToDevice } from './artifacts.ts';
import { eventually, type TestServer } from './test-server.ts';

type Deployment = NonNullable<DesiredState['deployment']>;
let published = 0;

/**
 * Publishes a desired state on the broker as the server's own session would (retained), after
 * recording it as the device's desired state so that its artifact may be downloaded: what an
 * attacker holding the broker, or the server's online side, can do.
 */
export async function publishAsServer(
  server: TestServer,
  deviceId: string,
  deployment: Deployment,
): Promise<void> {
  await sendToDevice(server, deviceId, deployment);
  const desired = await new RolloutRepository(server.db).desired(deviceId);
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${server.mqttPort}`, {
    clientId: `${SERVER_MQTT_USERNAME}-forger-${++published}`,
    username: SERVER_MQTT_USERNAME,
    password: ensureServerMqttSecret(server.dataDir),
    reconnectPeriod: 0,
  });
  await client.publishAsync(deviceTopic(deviceId, 'desired'), JSON.stringify(desired), {
    qos: 1,
    retain: true,
  });
  await client.endAsync();
}

/** The reason the device reported for failing `deploymentId`, once it has. */
export function deploymentRefusal(
  server: TestServer,
  deviceId: string,
  deploymentId: string,
  timeoutMs: number,
): Promise<string> {
  return eventually(
    `the refusal of ${deploymentId}`,
    async () => {
      const { events } = (await server.api<DeviceEventHistory>('GET', `/api/v1/devices/${deviceId}/events`))
        .body;
      return (
        events.find((event) => event.deploymentId === deploymentId && event.data?.state === 'failed')
          ?.message ?? undefined
      );
    },
    timeoutMs,
  );
}
