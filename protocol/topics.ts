/** MQTT topic names shared by the server and the agent. Version 1 of the wire contract. */
export const PROTOCOL_VERSION = 1;
export const TOPIC_ROOT = `boardfleet/v${PROTOCOL_VERSION}/devices`;

/** Topics a device publishes (device → server). */
export const DEVICE_TO_SERVER_CHANNELS = [
  'presence',
  'inventory',
  'health',
  'events',
  'certificate-request',
  'logs',
  'shell-output',
] as const;
/** Topics a device subscribes to (server → device). */
export const SERVER_TO_DEVICE_CHANNELS = [
  'desired',
  'commands',
  'certificate',
  'log-watch',
  'shell-input',
] as const;

/**
 * Channels of a conversation with one operator's request (a log watch, a shell session): every
 * replica receives them, not one of a shared subscription, since only the replica holding the
 * operator's connection can use them. They flow only while someone watches or types.
 */
export const TO_EVERY_REPLICA: ReadonlySet<DeviceToServerChannel> = new Set(['logs', 'shell-output']);

/** Subscribed to after the core channels: a broker set up by an older server may refuse them (see the agent). */
export const OPTIONAL_SERVER_TO_DEVICE_CHANNELS: ReadonlySet<ServerToDeviceChannel> = new Set([
  'certificate',
  'log-watch',
  'shell-input',
]);

export type DeviceToServerChannel = (typeof DEVICE_TO_SERVER_CHANNELS)[number];
export type ServerToDeviceChannel = (typeof SERVER_TO_DEVICE_CHANNELS)[number];
export type Channel = DeviceToServerChannel | ServerToDeviceChannel;

/**
 * The server's hello, retained on its broker for every device (server → device). A broker that
 * has it is Boardfleet's: the agent waits for it after connecting before it announces itself, and
 * calls a broker without it foreign. Beside the devices' root, so no device id can reach it.
 */
export const SERVER_HELLO_TOPIC = `boardfleet/v${PROTOCOL_VERSION}/server/hello`;

/** Largest payload either side accepts; an agent's messages are a few hundred bytes. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;

/**
 * Device ids double as MQTT client ids, usernames and topic levels, so they are limited to
 * characters that cannot act as wildcards or separators (Mosquitto CVE-2017-7650).
 */
export const DEVICE_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID_PATTERN.test(id);
}

export function deviceTopic(deviceId: string, channel: Channel): string {
  return `${TOPIC_ROOT}/${deviceId}/${channel}`;
}

/** Subscription filter for one channel of every device (the server's side). */
export function allDevicesTopic(channel: Channel): string {
  return `${TOPIC_ROOT}/+/${channel}`;
}

/** Splits a device topic into its parts; null for anything that is not one. */
export function parseDeviceTopic(topic: string): { deviceId: string; channel: Channel } | null {
  const prefix = `${TOPIC_ROOT}/`;
  if (!topic.startsWith(prefix)) return null;
  const rest = topic.slice(prefix.length).split('/');
  if (rest.length !== 2) return null;
  const [deviceId, channel] = rest as [string, string];
  if (!isValidDeviceId(deviceId)) return null;
  const known: readonly string[] = [...DEVICE_TO_SERVER_CHANNELS, ...SERVER_TO_DEVICE_CHANNELS];
  return known.includes(channel) ? { deviceId, channel: channel as Channel } : null;
}
