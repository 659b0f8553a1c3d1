import {
  DEVICE_TO_SERVER_CHANNELS,
  deviceTopic,
  isValidDeviceId,
  PROTOCOL_VERSION,
  SERVER_HELLO_TOPIC,
  SERVER_TO_DEVICE_CHANNELS,
} from '../../../protocol/topics.ts';
import { SERVER_MQTT_USERNAME } from '../embedded-broker.ts';

/**
 * Who may do what on Mosquitto, written as dynamic-security roles. The same rules as the embedded
 * broker's (../topic-acl.ts), which the tests use as the oracle for both brokers.
 */

/** Kinds of ACL the dynamic-security plugin knows (Mosquitto 2.0). */
export type DynsecAclType =
  | 'publishClientSend'
  | 'publishClientReceive'
  | 'subscribeLiteral'
  | 'subscribePattern'
  | 'unsubscribeLiteral'
  | 'unsubscribePattern';

export interface DynsecAcl {
  acltype: DynsecAclType;
  topic: string;
  allow: boolean;
}

/** Where the plugin takes commands, and where it answers them. */
export const DYNSEC_COMMAND_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = `${DYNSEC_COMMAND_TOPIC}/response`;

/** The broker credential that manages device clients; not a device and not the server's session. */
export const DYNSEC_ADMIN_USERNAME = 'boardfleet-admin';
export const DYNSEC_ADMIN_ROLE = 'boardfleet-admin';
/** The server's own session, under the same name as on the embedded broker. */
export const DYNSEC_SERVER_USERNAME = SERVER_MQTT_USERNAME;
export const DYNSEC_SERVER_ROLE = SERVER_MQTT_USERNAME;

/** Usernames a device id must never take: they are valid device ids too. */
export const RESERVED_USERNAMES: readonly string[] = [DYNSEC_ADMIN_USERNAME, DYNSEC_SERVER_USERNAME];

/**
 * Deny whatever no role allows. Receiving is denied too, so a subscription a role grants by
 * mistake still delivers nothing it does not name; unsubscribing stays allowed (it grants nothing).
 */
export const DEFAULT_ACL_ACCESS = {
  publishClientSend: false,
  publishClientReceive: false,
  subscribe: false,
  unsubscribe: true,
} as const;

const allow = (acltype: DynsecAclType, topic: string): DynsecAcl => ({ acltype, topic, allow: true });

/** Roles hold ACLs of one client, so each device gets its own role: 2.0 has no `%c` in ACL topics. */
export function deviceRoleName(deviceId: string): string {
  return `boardfleet-device-${deviceId}`;
}

/** The device a role is for, or null for any other role. */
export function deviceIdOfRole(rolename: string): string | null {
  const prefix = deviceRoleName('');
  const deviceId = rolename.startsWith(prefix) ? rolename.slice(prefix.length) : '';
  return isValidDeviceId(deviceId) ? deviceId : null;
}

/**
 * A device publishes exactly its own device-to-server topics and subscribes exactly to its own
 * server-to-device topics and the server's hello, as `mayDevicePublish`/`mayDeviceSubscribe`
 * say. Literal subscriptions only: a filter with `+` or `#` matches no ACL and is refused.
 */
export function deviceAcls(deviceId: string): DynsecAcl[] {
  const readable = [
    ...SERVER_TO_DEVICE_CHANNELS.map((channel) => deviceTopic(deviceId, channel)),
    SERVER_HELLO_TOPIC,
  ];
  return [
    ...DEVICE_TO_SERVER_CHANNELS.map((channel) => allow('publishClientSend', deviceTopic(deviceId, channel))),
    ...readable.map((topic) => allow('subscribeLiteral', topic)),
    ...readable.map((topic) => allow('publishClientReceive', topic)),
  ];
}

/**
 * The server uses everything under `boardfleet/v1/` (`mayServerUse`), and subscribes to the
 * devices' topics as one shared subscription per group (`$share/GROUP/…`), so that several
 * replicas each take a part of the messages.
 */
export function serverAcls(): DynsecAcl[] {
  const everything = `boardfleet/v${PROTOCOL_VERSION}/#`;
  return [
    allow('publishClientSend', everything),
    allow('publishClientReceive', everything),
    allow('subscribePattern', everything),
    allow('subscribePattern', `$share/+/${everything}`),
  ];
}

/** Only the plugin's control topics: the admin needs to read no device's messages. */
export function adminAcls(): DynsecAcl[] {
  const control = '$CONTROL/dynamic-security/#';
  return [
    allow('publishClientSend', control),
    allow('publishClientReceive', control),
    allow('subscribePattern', control),
  ];
}
