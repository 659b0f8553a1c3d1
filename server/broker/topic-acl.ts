import {
  DEVICE_TO_SERVER_CHANNELS,
  deviceTopic,
  isValidDeviceId,
  SERVER_HELLO_TOPIC,
  SERVER_TO_DEVICE_CHANNELS,
} from '../../protocol/topics.ts';

/**
 * Who may do what on the broker. Devices get an allow-list of exact topics under their own id:
 * no wildcards at all, so `#`, `+`, `$SYS/#` and other devices' topics are refused, and a device
 * cannot publish to its own `desired`/`commands` to impersonate the server. Every device may read
 * the server's hello, which is how an agent knows it reached Boardfleet's broker.
 */
export function mayDevicePublish(deviceId: string, topic: string): boolean {
  return DEVICE_TO_SERVER_CHANNELS.some((channel) => topic === deviceTopic(deviceId, channel));
}

export function mayDeviceSubscribe(deviceId: string, topicFilter: string): boolean {
  if (topicFilter === SERVER_HELLO_TOPIC) return true;
  return SERVER_TO_DEVICE_CHANNELS.some((channel) => topicFilter === deviceTopic(deviceId, channel));
}

/** Client ids and usernames with `+`, `#` or `/` once let clients slip past pattern ACLs (CVE-2017-7650). */
export function isAcceptableClientIdentity(clientId: string, username: string | undefined): boolean {
  return username !== undefined && clientId === username && isValidDeviceId(clientId);
}

export function mayServerUse(topic: string): boolean {
  return topic.startsWith('boardfleet/v1/');
}
