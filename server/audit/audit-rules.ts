/**
 * What the audit log records for each operation that changes something. The table has a row for
 * every operation whose method is not GET, so a new write does not compile until it gets a rule
 * or a reason it records nothing; the interceptor applies the rules to every route.
 */
import type { AuditChannel } from '../../protocol/api/audit.ts';
import type { ApiOperation, ResponseOf } from '../../protocol/api/operation.ts';
import { type OperationId, operations } from '../../protocol/api/operations.ts';
import { ROLLOUT_ACTIONS } from '../../protocol/api/rollouts.ts';
import { webhookUrlForLog } from '../../protocol/api/webhooks.ts';
import type { NewAuditEntry } from './audit.repository.ts';

/** What an audited call asked for, and what it answered when it worked. */
export interface AuditedCall<Result = unknown> {
  params: Record<string, string>;
  query: unknown;
  /** The JSON body as sent: a call that failed may have failed to validate it. */
  body: unknown;
  /** The answer; undefined when the call failed. */
  result: Result | undefined;
}

export interface AuditRule<Result = unknown> {
  /** What was done, `noun.verb`. */
  action: string | ((call: AuditedCall<Result>) => string);
  /** The id of what it was done to; null when a create failed before there was one. */
  target: (call: AuditedCall<Result>) => string | null;
  /** What was asked for, in a few words. Only named fields are read, so no secret gets in. */
  detail?: (call: AuditedCall<Result>) => string | null;
}

/** An operation that is not an operator's action, with the reason. */
export interface NotAudited {
  notAudited: string;
}

type ChangingOperationId = {
  [K in OperationId]: (typeof operations)[K]['method'] extends 'get' ? never : K;
}[OperationId];

/** Longest target, detail or reason kept: a refused call's input is not validated and may be huge. */
const MAX_TEXT = 500;

const clip = (text: string) => (text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT - 1)}…` : text);

/** A field of a body or query as text: strings, numbers, booleans, lists and maps of them. */
function field(input: unknown, name: string): string | null {
  if (typeof input !== 'object' || input === null || !Object.hasOwn(input, name)) return null;
  const value = (input as Record<string, unknown>)[name];
  const text = (item: unknown) =>
    typeof item === 'string' || typeof item === 'number' || typeof item === 'boolean' ? String(item) : null;
  if (Array.isArray(value)) return value.map(text).join(',');
  if (typeof value === 'object' && value !== null)
    return Object.entries(value)
      .map(([key, item]) => `${key}=${text(item) ?? '?'}`)
      .join(',');
  return text(value);
}

/** `name kitchen-pi, tags lab,bench`: the named fields that are there and not empty, as sent. */
function fields(input: unknown, names: string[]): string | null {
  const present = names.flatMap((name) => {
    const value = field(input, name);
    return value === null || value === '' ? [] : [`${name} ${value}`];
  });
  return present.length > 0 ? present.join(', ') : null;
}

/** A member of an object as sent; undefined when it is not an object or has no such member. */
function member(input: unknown, name: string): unknown {
  if (typeof input !== 'object' || input === null || !Object.hasOwn(input, name)) return undefined;
  return (input as Record<string, unknown>)[name];
}

/** Key ids shortened as git shortens commits: enough to tell keys apart in the log. */
const shortIds = (ids: unknown) =>
  Array.isArray(ids) ? ids.map((id) => (typeof id === 'string' ? id.slice(0, 12) : '?')).join(',') : '?';

/** A key ceremony in a few words: which keys the root names, its threshold, and which keys signed it. */
function rootCeremony(body: unknown): string | null {
  const roles = member(member(body, 'signed'), 'roles');
  if (roles === undefined) return null;
  const role = (name: string) => member(roles, name);
  const signatures = member(body, 'signatures');
  const signers = Array.isArray(signatures) ? signatures.map((signature) => member(signature, 'keyid')) : [];
  return [
    `root keys ${shortIds(member(role('root'), 'keyids'))} threshold ${field(role('root'), 'threshold') ?? '?'}`,
    ...['targets', 'snapshot', 'timestamp'].map(
      (name) => `${name} ${shortIds(member(role(name), 'keyids'))}`,
    ),
    `signed by ${shortIds(signers) || 'no key'}`,
  ].join('; ');
}

const isRolloutAction = (action: string | undefined) =>
  (ROLLOUT_ACTIONS as readonly (string | undefined)[]).includes(action);

export const AUDIT_RULES: {
  [K in ChangingOperationId]: AuditRule<ResponseOf<(typeof operations)[K]>> | NotAudited;
} = {
  createDevice: {
    action: 'device.create',
    target: ({ result }) => result?.device.id ?? null,
    detail: ({ body }) => fields(body, ['name', 'board', 'tags']),
  },
  updateDevice: {
    action: 'device.update',
    target: ({ params }) => params.id ?? null,
    detail: ({ body }) => fields(body, ['name', 'tags']),
  },
  revokeDevice: {
    action: 'device.revoke',
    target: ({ params }) => params.id ?? null,
    detail: ({ result }) => (result ? `name ${result.name}` : null),
  },
  deleteDevice: {
    action: 'device.delete',
    target: ({ params }) => params.id ?? null,
    // The device's name is gone with it: the log keeps it.
    detail: ({ result }) => (result ? `name ${result.name}` : null),
  },
  sendCommand: {
    action: 'device.command',
    target: ({ params }) => params.id ?? null,
    detail: ({ body }) => fields(body, ['type']),
  },
  uploadConsole: { notAudited: 'a device uploads the console of its own VM, with its own credentials' },
  createProvisioningToken: {
    action: 'provisioning-token.create',
    target: ({ result }) => result?.id ?? null,
    detail: ({ body }) => fields(body, ['name', 'expiresIn', 'maxUses', 'board', 'tags']),
  },
  provision: {
    notAudited:
      'an agent registers itself with a provisioning token; creating and revoking the token are audited',
  },
  requestDeviceCertificate: {
    notAudited: 'a device asks for a certificate for its own key, with its own credentials',
  },
  createOperatorToken: {
    action: 'operator-token.create',
    target: ({ result }) => result?.id ?? null,
    detail: ({ body }) => fields(body, ['name', 'role', 'expiresIn']),
  },
  revokeToken: {
    action: 'token.revoke',
    target: ({ params }) => params.id ?? null,
    detail: ({ result }) => (result ? `${result.kind} token ${result.name}` : null),
  },
  signIn: {
    notAudited: 'opens a dashboard session; what the session does is audited under its token',
  },
  signOut: { notAudited: 'ends a dashboard session; nothing in the fleet changes' },
  uploadArtifact: {
    action: 'artifact.upload',
    target: ({ result }) => result?.id ?? null,
    detail: ({ query }) => fields(query, ['name', 'version', 'kind', 'boards']),
  },
  fetchArtifactChunks: {
    notAudited: 'a device (or an operator) reads chunks of an artifact for a delta update; nothing changes',
  },
  createRelease: {
    action: 'release.create',
    target: ({ result }) => result?.id ?? null,
    detail: ({ body }) => fields(body, ['name', 'artifacts']),
  },
  createRollout: {
    action: 'rollout.create',
    target: ({ result }) => result?.id ?? null,
    detail: ({ body }) => fields(body, ['release', 'name']),
  },
  previewRollout: { notAudited: 'counts the devices each wave would get; starts and changes nothing' },
  actOnRollout: {
    // An unknown action is refused; its word is not made an action of the log.
    action: ({ params }) => (isRolloutAction(params.action) ? `rollout.${params.action}` : 'rollout.act'),
    target: ({ params }) => params.id ?? null,
  },
  createBuild: {
    action: 'build.create',
    target: ({ result }) => result?.id ?? null,
    detail: ({ body }) => fields(body, ['recipe', 'board']),
  },
  cancelBuild: {
    action: 'build.cancel',
    target: ({ params }) => params.id ?? null,
  },
  publishTufRoot: {
    action: 'tuf-root.publish',
    target: ({ body }) => {
      const version = field(member(body, 'signed'), 'version');
      return version === null ? null : `root v${version}`;
    },
    detail: ({ body }) => rootCeremony(body),
  },
  rotateTufOnlineKey: {
    action: 'tuf-key.rotate',
    target: ({ body }) => field(body, 'role'),
    detail: ({ result }) => (result ? `pending key ${result.pending.keyId}` : null),
  },
  createRollbackOrder: {
    action: 'rollback-order.create',
    target: ({ result }) => result?.id ?? null,
    detail: ({ body }) => fields(body, ['device', 'release', 'from', 'to']),
  },
  // The secret is never logged; the URL without its query or credentials (receivers put tokens there).
  createWebhook: {
    action: 'webhook.create',
    target: ({ result }) => result?.id ?? null,
    detail: ({ body }) => {
      const url = field(body, 'url');
      return [url === null ? null : `url ${webhookUrlForLog(url)}`, fields(body, ['events'])]
        .filter((part) => part !== null)
        .join(', ');
    },
  },
  deleteWebhook: {
    action: 'webhook.delete',
    target: ({ params }) => params.id ?? null,
    detail: ({ result }) => (result ? `url ${webhookUrlForLog(result.url)}` : null),
  },
  // The value is never logged: it may be a secret, and the log is read by every viewer.
  setConfigVariable: {
    action: 'config.set',
    target: ({ params }) => params.name ?? null,
    detail: ({ body }) => fields(body, ['scope', 'target', 'secret']) ?? 'scope fleet',
  },
  unsetConfigVariable: {
    action: 'config.unset',
    target: ({ params }) => params.name ?? null,
    detail: ({ query }) => fields(query, ['scope', 'target']) ?? 'scope fleet',
  },
};

const operationIds = new Map<ApiOperation, OperationId>(
  Object.entries(operations).map(([id, operation]) => [operation, id as OperationId]),
);

/** The rule for an operation; null for reads and for writes that are not an operator's action. */
export function auditRuleFor(operation: ApiOperation): AuditRule | null {
  const id = operationIds.get(operation);
  const rule = id === undefined ? undefined : (AUDIT_RULES as Record<string, AuditRule | NotAudited>)[id];
  // Each rule is only ever handed its own operation's answer.
  return rule && !('notAudited' in rule) ? (rule as AuditRule) : null;
}

/** Who made an audited call. */
export interface AuditActor {
  name: string;
  tokenId: string;
  via: AuditChannel;
}

/** The entry for one audited call: it worked (`reason` null) or failed with the message the caller got. */
export function auditEntry(
  rule: AuditRule,
  call: AuditedCall,
  actor: AuditActor,
  reason: string | null,
  at: number,
): NewAuditEntry {
  const target = rule.target(call);
  const detail = rule.detail?.(call) ?? null;
  return {
    at,
    actor: actor.name,
    actorTokenId: actor.tokenId,
    via: actor.via,
    action: typeof rule.action === 'string' ? rule.action : rule.action(call),
    target: target === null ? null : clip(target),
    outcome: reason === null ? 'ok' : 'failed',
    detail: detail === null ? null : clip(detail),
    reason: reason === null ? null : clip(reason),
  };
}
