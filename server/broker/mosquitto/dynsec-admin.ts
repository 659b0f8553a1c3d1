import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { BoardfleetError, type ErrorCode } from '../../../protocol/errors.ts';
import { isValidDeviceId } from '../../../protocol/topics.ts';
import {
  deviceAcls,
  deviceIdOfRole,
  deviceRoleName,
  type DynsecAcl,
  DYNSEC_COMMAND_TOPIC,
  DYNSEC_RESPONSE_TOPIC,
  RESERVED_USERNAMES,
} from './dynsec-acl.ts';

export interface DynsecAdminOptions {
  /** The broker, `mqtt://host:port`. */
  url: string;
  username: string;
  password: string;
  /** How long a command waits for the plugin's answer, and the first connection for its CONNACK. */
  timeoutMs?: number;
  /** Where connection errors after the first connection go (MQTT.js retries them). */
  logger?: Pick<Logger, 'warn'>;
}

/** A client as the plugin describes it. */
export interface DynsecClient {
  username: string;
  /** The only client id it may connect with; undefined: any. */
  clientId?: string;
  disabled: boolean;
  roles: string[];
}

type DynsecCommand = { command: string } & Record<string, unknown>;

interface DynsecResponse {
  command?: string;
  error?: string;
  data?: unknown;
  correlationData?: string;
}

interface PendingCommand {
  command: DynsecCommand;
  resolve(data: unknown): void;
  reject(error: BoardfleetError): void;
  timer: NodeJS.Timeout;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Manages clients and roles in Mosquitto's dynamic-security plugin: commands go to
 * `$CONTROL/dynamic-security/v1`, answers come back on `…/response` to every admin connected, so
 * each command carries its own `correlationData` and waits for the answer with the same.
 */
export class DynsecAdmin {
  private readonly pending = new Map<string, PendingCommand>();
  /** Commands held while the connection is down, sent once the answers' subscription is back. */
  private readonly held = new Map<string, () => void>();
  /** Unique per connection: another admin's answers on the shared response topic are not ours. */
  private readonly correlationPrefix = randomUUID();
  private sequence = 0;
  private subscribed = true;

  private constructor(
    private readonly client: MqttClient,
    private readonly options: DynsecAdminOptions & { timeoutMs: number },
  ) {
    client.on('message', (topic, payload) => {
      if (topic === DYNSEC_RESPONSE_TOPIC) this.settle(payload);
    });
    client.on('close', () => (this.subscribed = false));
    client.on('connect', () => void this.resubscribe());
  }

  /** Connects and subscribes to the plugin's answers; fails if the broker refuses either. */
  static async connect(options: DynsecAdminOptions): Promise<DynsecAdmin> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let client: MqttClient;
    try {
      client = await mqtt.connectAsync(
        options.url,
        {
          protocolVersion: 4,
          clientId: `${options.username}-${process.pid}-${randomUUID().slice(0, 8)}`,
          username: options.username,
          password: options.password,
          clean: true,
          connectTimeout: timeoutMs,
          reconnectPeriod: 1_000,
          // MQTT.js would resubscribe only after sending what it queued offline, whose answers
          // would then be lost: this class resubscribes itself before it sends anything.
          resubscribe: false,
        },
        false,
      );
    } catch (error) {
      throw connectionError(options, error);
    }
    client.on('error', (error) => options.logger?.warn({ err: error }, 'dynamic-security admin connection'));
    if (!(await subscribeToAnswers(client))) {
      await client.endAsync(true);
      throw new BoardfleetError(
        'invalid-config',
        `${options.url} refused ${options.username} the subscription to ${DYNSEC_RESPONSE_TOPIC}: ` +
          `its role must allow $CONTROL/dynamic-security/# (boardfleet broker-config mosquitto writes such a role)`,
      );
    }
    return new DynsecAdmin(client, { ...options, timeoutMs });
  }

  /**
   * A device's broker client: its own role (its topics only, see dynsec-acl.ts) and its id as the
   * only client id it may connect with, so its credential cannot take over another session.
   */
  async addDevice(deviceId: string, password: string): Promise<void> {
    assertDeviceId(deviceId);
    const role = deviceRoleName(deviceId);
    await this.createRole(role, deviceAcls(deviceId));
    try {
      await this.createClient(deviceId, password, { roles: [role], clientId: deviceId });
    } catch (error) {
      await this.deleteRole(role).catch(() => undefined);
      throw error;
    }
  }

  /** Deletes a device's client (dropping its connection) and its role; either may be gone already. */
  async removeDevice(deviceId: string): Promise<void> {
    assertDeviceId(deviceId);
    await ignoreNotFound(this.deleteClient(deviceId));
    await ignoreNotFound(this.deleteRole(deviceRoleName(deviceId)));
  }

  async createClient(
    username: string,
    password: string,
    options: { roles?: string[]; clientId?: string } = {},
  ): Promise<void> {
    await this.send({
      command: 'createClient',
      username,
      password,
      ...(options.clientId === undefined ? {} : { clientid: options.clientId }),
      roles: (options.roles ?? []).map((rolename) => ({ rolename })),
    });
  }

  /** Deletes a client; the plugin drops its live connections. */
  async deleteClient(username: string): Promise<void> {
    await this.send({ command: 'deleteClient', username });
  }

  async setClientPassword(username: string, password: string): Promise<void> {
    await this.send({ command: 'setClientPassword', username, password });
  }

  /** The client may no longer log in, and its live connections are dropped at once. */
  async disableClient(username: string): Promise<void> {
    await this.send({ command: 'disableClient', username });
  }

  /** The client, or null when the plugin has none by that name. */
  async getClient(username: string): Promise<DynsecClient | null> {
    const data = await ignoreNotFound(this.send({ command: 'getClient', username }));
    if (data === null) return null;
    const client = (data as { client?: Record<string, unknown> }).client ?? {};
    const roles = Array.isArray(client.roles) ? (client.roles as Array<{ rolename?: unknown }>) : [];
    return {
      username: String(client.username ?? username),
      clientId: typeof client.clientid === 'string' && client.clientid !== '' ? client.clientid : undefined,
      disabled: client.disabled === true,
      roles: roles.map((role) => String(role.rolename)),
    };
  }

  /** Every client's username (`count: -1` asks the plugin for all of them in one answer). */
  async listClients(): Promise<string[]> {
    const data = (await this.send({ command: 'listClients', verbose: false, count: -1, offset: 0 })) as {
      clients?: unknown[];
    };
    return (data.clients ?? []).map((client) =>
      typeof client === 'string' ? client : String((client as { username?: unknown }).username),
    );
  }

  async createRole(rolename: string, acls: DynsecAcl[]): Promise<void> {
    await this.send({ command: 'createRole', rolename, acls });
  }

  async deleteRole(rolename: string): Promise<void> {
    await this.send({ command: 'deleteRole', rolename });
  }

  /** Every role with its ACLs (`count: -1`: all in one answer). */
  async listRoles(): Promise<Array<{ rolename: string; acls: DynsecAcl[] }>> {
    const data = (await this.send({ command: 'listRoles', verbose: true, count: -1, offset: 0 })) as {
      roles?: Array<{ rolename?: unknown; acls?: unknown }>;
    };
    return (data.roles ?? []).map((role) => ({
      rolename: String(role.rolename),
      acls: Array.isArray(role.acls) ? (role.acls as DynsecAcl[]) : [],
    }));
  }

  async addRoleAcl(rolename: string, acl: DynsecAcl): Promise<void> {
    await this.send({ command: 'addRoleACL', rolename, ...acl });
  }

  /**
   * Gives every device role the ACLs this server's `deviceAcls` names and the role lacks: the
   * channels a newer server added (live logs, the shell) reach devices registered by an older one.
   * Returns how many roles changed. ACLs the role has beyond them are left alone.
   */
  async updateDeviceRoles(): Promise<number> {
    let updated = 0;
    for (const role of await this.listRoles()) {
      const deviceId = deviceIdOfRole(role.rolename);
      if (deviceId === null) continue;
      const has = new Set(role.acls.map((acl) => `${acl.acltype} ${acl.topic}`));
      const missing = deviceAcls(deviceId).filter((acl) => !has.has(`${acl.acltype} ${acl.topic}`));
      if (missing.length === 0) continue;
      await Promise.all(missing.map((acl) => this.addRoleAcl(role.rolename, acl)));
      updated++;
    }
    return updated;
  }

  /** Disconnects; commands still waiting fail. */
  async close(): Promise<void> {
    this.held.clear();
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      this.pending.delete(id);
      pending.reject(
        new BoardfleetError('unavailable', `${describe(pending.command)}: the admin connection was closed`),
      );
    }
    await this.client.endAsync();
  }

  /**
   * Sends one command and waits for its answer. A command that times out is never sent later;
   * one that timed out after it was sent may still have been applied.
   */
  private send(command: DynsecCommand): Promise<unknown> {
    const correlationData = `${this.correlationPrefix}:${++this.sequence}`;
    return new Promise((resolve, reject) => {
      const fail = (error: BoardfleetError) => {
        clearTimeout(timer);
        this.pending.delete(correlationData);
        this.held.delete(correlationData);
        reject(error);
      };
      const timer = setTimeout(
        () =>
          fail(
            new BoardfleetError(
              'unavailable',
              `${describe(command)}: no answer from the dynamic-security plugin at ${this.options.url} within ` +
                `${this.options.timeoutMs} ms — is the broker running, with the plugin loaded (the plugin line in mosquitto.conf)?`,
            ),
          ),
        this.options.timeoutMs,
      );
      this.pending.set(correlationData, { command, resolve, reject, timer });
      const publish = () =>
        this.client.publish(
          DYNSEC_COMMAND_TOPIC,
          JSON.stringify({ commands: [{ ...command, correlationData }] }),
          { qos: 1 },
          (error) => {
            if (error) {
              fail(
                new BoardfleetError(
                  'unavailable',
                  `${describe(command)}: not sent to ${this.options.url}: ${error.message}`,
                ),
              );
            }
          },
        );
      if (this.subscribed) publish();
      else this.held.set(correlationData, publish);
    });
  }

  /** After a reconnect: the answers' subscription first (the session was clean), then what was held. */
  private async resubscribe(): Promise<void> {
    if (!(await subscribeToAnswers(this.client))) {
      this.options.logger?.warn(`${this.options.url} refused the dynamic-security answers' subscription`);
      return;
    }
    this.subscribed = true;
    const held = [...this.held.values()];
    this.held.clear();
    for (const publish of held) publish();
  }

  /** Resolves or rejects each command the payload answers; answers to other admins are ignored. */
  private settle(payload: Buffer): void {
    let responses: DynsecResponse[];
    try {
      responses = (JSON.parse(payload.toString()) as { responses?: DynsecResponse[] }).responses ?? [];
    } catch {
      return;
    }
    for (const response of responses) {
      const pending = response.correlationData ? this.pending.get(response.correlationData) : undefined;
      if (!pending || !response.correlationData) continue;
      this.pending.delete(response.correlationData);
      clearTimeout(pending.timer);
      if (response.error) pending.reject(refusal(pending.command, response.error));
      else pending.resolve(response.data ?? {});
    }
  }
}

async function subscribeToAnswers(client: MqttClient): Promise<boolean> {
  return client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 }).then(
    ([grant]) => grant !== undefined && grant.qos !== 128,
    () => false,
  );
}

/** `createClient dev-a`: the command and what it is about, for messages. */
function describe(command: DynsecCommand): string {
  const subject = command.username ?? command.rolename ?? command.groupname;
  return `dynamic-security ${command.command}${typeof subject === 'string' ? ` ${subject}` : ''}`;
}

/** The plugin's error text ("Client already exists", "Role not found") as a coded error. */
function refusal(command: DynsecCommand, error: string): BoardfleetError {
  const code: ErrorCode = /already exists/i.test(error)
    ? 'conflict'
    : /not found/i.test(error)
      ? 'not-found'
      : 'api-error';
  return new BoardfleetError(code, `${describe(command)} refused by Mosquitto: ${error}`);
}

function connectionError(options: DynsecAdminOptions, error: unknown): BoardfleetError {
  const reason = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown }).code;
  // CONNACK 4 (bad username or password) and 5 (not authorized).
  if (code === 4 || code === 5) {
    return new BoardfleetError(
      'invalid-config',
      `${options.url} refused the dynamic-security admin ${options.username} (${reason}): ` +
        'check the admin username and password (BOARDFLEET_MQTT_ADMIN_USERNAME/PASSWORD)',
      { cause: error },
    );
  }
  return new BoardfleetError('unavailable', `cannot reach the MQTT broker at ${options.url}: ${reason}`, {
    cause: error,
  });
}

function assertDeviceId(deviceId: string): void {
  if (!isValidDeviceId(deviceId) || RESERVED_USERNAMES.includes(deviceId)) {
    throw new BoardfleetError(
      'invalid-arguments',
      `${JSON.stringify(deviceId)} cannot be a device's broker client: ` +
        `device ids are lowercase letters, digits, - and _ (at most 64), and not ${RESERVED_USERNAMES.join(' or ')}`,
    );
  }
}

/** The promise's value, or null if it failed with not-found. */
async function ignoreNotFound<T>(promise: Promise<T>): Promise<T | null> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof BoardfleetError && error.code === 'not-found') return null;
    throw error;
  }
}
