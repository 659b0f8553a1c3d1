import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { MAX_PAYLOAD_BYTES } from '../../../protocol/topics.ts';
import { DEFAULT_BROKER_LIMITS } from '../../config/config.ts';
import type { ServerCertificateFiles } from '../../tls/fleet-tls.ts';
import {
  adminAcls,
  DEFAULT_ACL_ACCESS,
  DYNSEC_ADMIN_ROLE,
  DYNSEC_ADMIN_USERNAME,
  DYNSEC_SERVER_ROLE,
  DYNSEC_SERVER_USERNAME,
  serverAcls,
} from './dynsec-acl.ts';

/** The files `boardfleet broker-config mosquitto` writes in its folder. */
/** Messages the server's session may have queued per device the broker allows: a burst of 20 each. */
const SERVER_QUEUE_PER_DEVICE = 20;

export const MOSQUITTO_CONF_FILE = 'mosquitto.conf';
export const DYNSEC_STATE_FILE = 'dynamic-security.json';
export const BOARDFLEET_ENV_FILE = 'boardfleet.env';

export const MOSQUITTO_PID_FILE = 'mosquitto.pid';

/** The variables in boardfleet.env: what the server needs to use this broker. */
export const MOSQUITTO_ENVIRONMENT = {
  url: 'MQTT_URL',
  tlsPort: 'BOARDFLEET_MQTTS_PORT',
  pidFile: 'BOARDFLEET_MOSQUITTO_PID_FILE',
  deviceCertificates: 'BOARDFLEET_DEVICE_CERTIFICATES',
  adminUsername: 'BOARDFLEET_MQTT_ADMIN_USERNAME',
  adminPassword: 'BOARDFLEET_MQTT_ADMIN_PASSWORD',
  serverUsername: 'BOARDFLEET_MQTT_SERVER_USERNAME',
  serverPassword: 'BOARDFLEET_MQTT_SERVER_PASSWORD',
} as const;

export interface MosquittoSetup {
  /** Absolute folder holding the configuration, the dynamic-security state and the persistence file. */
  dir: string;
  port: number;
  /** Address the plain listener binds: loopback unless the operator opens it. */
  plainHost: string;
  /** MQTT over TLS for devices, with the server certificate. */
  tlsPort: number;
  tls: ServerCertificateFiles;
  /** `required`: the TLS listener takes only clients with a certificate of the fleet CA. */
  deviceCertificates: 'off' | 'required';
  /** mosquitto_dynamic_security.so */
  pluginPath: string;
  /** The account that owns `dir`: Mosquitto started as root switches to it (see mosquittoConf). */
  user: string;
  adminPassword: string;
  serverPassword: string;
}

/** A setup for a broker in `dir` with new credentials, run as the account running this process. */
export function newMosquittoSetup(
  dir: string,
  listeners: Pick<MosquittoSetup, 'port' | 'plainHost' | 'tlsPort' | 'tls' | 'deviceCertificates'>,
  pluginPath: string,
): MosquittoSetup {
  return {
    dir,
    ...listeners,
    pluginPath,
    user: userInfo().username,
    adminPassword: generateBrokerPassword(),
    serverPassword: generateBrokerPassword(),
  };
}

/**
 * Mosquitto's own defaults for dynamic-security passwords (PBKDF2-SHA512, a 12-byte salt, 101
 * iterations), as `mosquitto_ctrl dynsec init` writes them. The passwords generated here are 256
 * random bits, which no iteration count needs to slow down; more iterations would only cost the
 * broker CPU on every connect.
 */
const DYNSEC_SALT_BYTES = 12;
const DYNSEC_ITERATIONS = 101;
const DYNSEC_HASH_BYTES = 64;

export interface DynsecPasswordHash {
  password: string;
  salt: string;
  iterations: number;
}

export function hashDynsecPassword(
  password: string,
  salt: Buffer = randomBytes(DYNSEC_SALT_BYTES),
): DynsecPasswordHash {
  const hash = pbkdf2Sync(password, salt, DYNSEC_ITERATIONS, DYNSEC_HASH_BYTES, 'sha512');
  return { password: hash.toString('base64'), salt: salt.toString('base64'), iterations: DYNSEC_ITERATIONS };
}

/** A broker password: 256 random bits in characters a shell, systemd and dotenv read alike. */
export function generateBrokerPassword(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The broker's configuration. Limits match the embedded broker's defaults (BOARDFLEET_MQTT_*), so
 * a fleet behaves the same on either. `user` names the account that owns the folder: Mosquitto
 * started as root otherwise switches to the `mosquitto` user, which cannot read the 0600 state
 * file, and then runs on with no client able to log in.
 */
export function mosquittoConf(setup: MosquittoSetup): string {
  const limits = DEFAULT_BROKER_LIMITS;
  return `# Mosquitto for Boardfleet, written by \`boardfleet broker-config mosquitto\`.
# Start it with: mosquitto -c ${join(setup.dir, MOSQUITTO_CONF_FILE)}
# Each connection takes a file descriptor: raise \`ulimit -n\` above max_connections first.

per_listener_settings false
user ${setup.user}
# The server sends SIGHUP when it renews its certificate: Mosquitto then reads it again.
pid_file ${join(setup.dir, MOSQUITTO_PID_FILE)}
allow_anonymous false
allow_zero_length_clientid false

# Plain MQTT, for the server's own session; devices use MQTT over TLS below (a device secret
# sent here would travel in clear).
listener ${setup.port} ${setup.plainHost}

# MQTT over TLS for devices, with the server certificate of the fleet CA that agents pin. The
# Boardfleet server renews it in place; ca.pem is there for device certificates.
listener ${setup.tlsPort}
certfile ${setup.tls.certFile}
keyfile ${setup.tls.keyFile}
cafile ${setup.tls.caFile}
${
  setup.deviceCertificates === 'required'
    ? `# Device certificates (mTLS): a client without a valid certificate of the fleet CA is refused at
# the handshake; the device is then identified by its credential, which revocation deletes.
require_certificate true
`
    : ''
}
# Clients, roles and ACLs live in the dynamic-security plugin; the Boardfleet server manages them
# over $CONTROL/dynamic-security/v1 with the admin credential in ${BOARDFLEET_ENV_FILE}.
plugin ${setup.pluginPath}
plugin_opt_config_file ${join(setup.dir, DYNSEC_STATE_FILE)}

# Retained messages (desired state, presence, the server's hello) and sessions survive a restart;
# saved every minute as well, so a crash loses at most a minute.
persistence true
persistence_location ${setup.dir}/
autosave_interval 60
# Agents keep persistent sessions; one whose device is gone for a month is dropped.
persistent_client_expiration 30d

# The embedded broker's limits: BOARDFLEET_MQTT_MAX_PACKET_KIB, the 64 KiB payload limit,
# BOARDFLEET_MQTT_MAX_CONNECTIONS and BOARDFLEET_MQTT_MAX_PENDING_MESSAGES.
max_packet_size ${limits.maxPacketBytes}
message_size_limit ${MAX_PAYLOAD_BYTES}
max_connections ${limits.maxConnections}
# The server's session is one client taking every device's messages: when 10,000 devices connect
# or report at once, its queue must hold their presence, inventory and events, or Mosquitto drops
# them (a device's own queue only ever holds its desired state and commands).
max_queued_messages ${Math.max(limits.maxPendingMessages, limits.maxConnections * SERVER_QUEUE_PER_DEVICE)}
# Desired state and commands go out at once rather than waiting to fill a TCP segment.
set_tcp_nodelay true

log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S
`;
}

/**
 * The plugin's first state: the admin and the server's client, each with its role, and nothing
 * else allowed. The plugin rewrites this file on every change made through the admin.
 */
export function initialDynsecState(setup: Pick<MosquittoSetup, 'adminPassword' | 'serverPassword'>) {
  return {
    defaultACLAccess: DEFAULT_ACL_ACCESS,
    clients: [
      {
        username: DYNSEC_ADMIN_USERNAME,
        textname: 'Boardfleet: manages device clients',
        roles: [{ rolename: DYNSEC_ADMIN_ROLE }],
        ...hashDynsecPassword(setup.adminPassword),
      },
      {
        username: DYNSEC_SERVER_USERNAME,
        textname: "Boardfleet server's session",
        roles: [{ rolename: DYNSEC_SERVER_ROLE }],
        ...hashDynsecPassword(setup.serverPassword),
      },
    ],
    roles: [
      { rolename: DYNSEC_ADMIN_ROLE, acls: adminAcls() },
      { rolename: DYNSEC_SERVER_ROLE, acls: serverAcls() },
    ],
    groups: [],
  };
}

/** What the server needs in its environment, as KEY=value lines a shell, systemd and Node read. */
export function boardfleetEnv(setup: MosquittoSetup): string {
  const env = MOSQUITTO_ENVIRONMENT;
  return `# The Boardfleet server's side of ${join(setup.dir, MOSQUITTO_CONF_FILE)}. Secret: keep it 0600.
# Start the server with these variables set, e.g.
#   (set -a && . ${join(setup.dir, BOARDFLEET_ENV_FILE)} && npx boardfleet server)

# The broker: no embedded broker is started when this is set.
${env.url}=mqtt://${['0.0.0.0', '::', '127.0.0.1'].includes(setup.plainHost) ? 'localhost' : setup.plainHost}:${setup.port}
# Its MQTT over TLS, which agents are told, and its pid file, signalled when the certificate is renewed.
${env.tlsPort}=${setup.tlsPort}
${env.pidFile}=${join(setup.dir, MOSQUITTO_PID_FILE)}${
    setup.deviceCertificates === 'required'
      ? `\n# Devices get certificates at provisioning and renew them over MQTT: Mosquitto requires them.\n${env.deviceCertificates}=required`
      : ''
  }
# Mosquitto's dynamic-security admin: the server adds, disables and deletes device clients with it.
${env.adminUsername}=${DYNSEC_ADMIN_USERNAME}
${env.adminPassword}=${setup.adminPassword}
# The server's own MQTT session: reads every device's messages, sends desired state and commands.
${env.serverUsername}=${DYNSEC_SERVER_USERNAME}
${env.serverPassword}=${setup.serverPassword}
`;
}
