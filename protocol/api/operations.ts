/**
 * Every operation the server serves, one row each, keyed by operation id. The server routes by
 * this table, the OpenAPI document is generated from it, and clients take their types from it.
 */
import { CHUNK_HTTP } from '../chunk-index.ts';
import { CONSOLE_MAX_BYTES } from '../device-console.ts';
import { auditLogSchema, listAuditQuery } from './audit.ts';
import {
  artifactListSchema,
  artifactSchema,
  artifactUploadQuery,
  fleetKeySchema,
  listArtifactsQuery,
} from './artifacts.ts';
import { chunkIndexQuery, chunkRequestBody } from './artifact-chunks.ts';
import {
  buildEvents,
  buildJobSchema,
  buildListSchema,
  buildLogQuery,
  createBuildBody,
  listBuildsQuery,
} from './builds.ts';
import { configOperations } from './config-variables.ts';
import { consoleListSchema, consoleSummarySchema } from './consoles.ts';
import { logOperations } from './device-logs.ts';
import { shellOperations } from './device-shell.ts';
import {
  createDeviceBody,
  createdDeviceSchema,
  deviceDeploymentsSchema,
  deviceDetailsSchema,
  deviceEventHistorySchema,
  devicePageSchema,
  deviceSchema,
  healthHistorySchema,
  listDevicesQuery,
  presenceHistorySchema,
  sendCommandBody,
  sentCommandSchema,
  timeRangeQuery,
  updateDeviceBody,
} from './devices.ts';
import { issuedDeviceCertificateSchema, requestDeviceCertificateBody } from './device-certificates.ts';
import { fleetSummarySchema, healthzSchema } from './fleet.ts';
import { liveEvents, liveQuery } from './live.ts';
import { type ApiOperation, binary, events, json, text } from './operation.ts';
import {
  createdProvisioningTokenSchema,
  createProvisioningTokenBody,
  mqttEndpointSchema,
  provisionBody,
  provisionedDeviceSchema,
} from './provisioning.ts';
import { createReleaseBody, listReleasesQuery, releaseListSchema, releaseSchema } from './releases.ts';
import {
  createRolloutBody,
  rolloutActionParams,
  rolloutListSchema,
  rolloutPreviewSchema,
  rolloutSchema,
  rolloutStatusSchema,
} from './rollouts.ts';
import {
  createdOperatorTokenSchema,
  createOperatorTokenBody,
  meSchema,
  signInBody,
  tokenListSchema,
  tokenSchema,
} from './session.ts';
import { emptyBody } from './shared.ts';
import {
  createRollbackOrderBody,
  rollbackOrderSchema,
  rotatedOnlineKeySchema,
  rotateOnlineKeyBody,
  tufMetadataDocument,
  tufMetadataParams,
  tufRootDocument,
  tufStatusSchema,
} from './tuf.ts';
import { webhookOperations } from './webhooks.ts';

const noBody = json(emptyBody);

export const operations = {
  // Devices
  createDevice: {
    method: 'post',
    path: '/api/v1/devices',
    summary:
      'Create a device; the response carries its secret, shown only this once. A name another (not revoked) device has is refused with 409 unless `allowDuplicate`',
    tag: 'devices',
    access: 'operator',
    status: 201,
    body: json(createDeviceBody),
    response: json(createdDeviceSchema),
  },
  listDevices: {
    method: 'get',
    path: '/api/v1/devices',
    summary:
      'List devices, paginated (limit, offset) with the total that match. Filters: tag, board (reported, else registered), ' +
      'online, version (running), q (case-insensitive part of the name or id); sort: name or lastSeen (default: registration order)',
    tag: 'devices',
    access: 'viewer',
    status: 200,
    query: listDevicesQuery,
    response: json(devicePageSchema),
  },
  getDevice: {
    method: 'get',
    path: '/api/v1/devices/{id}',
    summary: 'A device with its inventory and latest health',
    tag: 'devices',
    access: 'viewer',
    status: 200,
    response: json(deviceDetailsSchema),
  },
  updateDevice: {
    method: 'patch',
    path: '/api/v1/devices/{id}',
    summary:
      'Rename a device and/or replace its tags; a name another (not revoked) device has is refused with 409 unless `allowDuplicate`',
    tag: 'devices',
    access: 'operator',
    status: 200,
    body: json(updateDeviceBody),
    response: json(deviceSchema),
  },
  revokeDevice: {
    method: 'post',
    path: '/api/v1/devices/{id}/revoke',
    summary: 'Revoke a device: its credential is deleted and its connection dropped',
    tag: 'devices',
    access: 'operator',
    status: 200,
    body: noBody,
    response: json(deviceSchema),
  },
  deleteDevice: {
    method: 'delete',
    path: '/api/v1/devices/{id}',
    summary:
      'Delete a revoked device with its history (health, presence, events, consoles) and its MQTT session; a device not revoked is refused with 409',
    tag: 'devices',
    access: 'operator',
    status: 200,
    response: json(deviceSchema),
  },
  sendCommand: {
    method: 'post',
    path: '/api/v1/devices/{id}/commands',
    summary: 'Send a one-off command (ping, report) to a device',
    tag: 'devices',
    access: 'operator',
    status: 202,
    body: json(sendCommandBody),
    response: json(sentCommandSchema),
  },
  listDeviceDeployments: {
    method: 'get',
    path: '/api/v1/devices/{id}/deployments',
    summary:
      'Deployment history: each rollout that included the device (release, version, state, outcome, reason, times), newest first',
    tag: 'devices',
    access: 'viewer',
    status: 200,
    response: json(deviceDeploymentsSchema),
  },
  getDeviceHealth: {
    method: 'get',
    path: '/api/v1/devices/{id}/health',
    summary: 'Health samples in a time range (from/to in ms since the epoch; default the last day)',
    tag: 'devices',
    access: 'viewer',
    status: 200,
    query: timeRangeQuery,
    response: json(healthHistorySchema),
  },
  getDevicePresence: {
    method: 'get',
    path: '/api/v1/devices/{id}/presence',
    summary: 'Online/offline changes in a time range',
    tag: 'devices',
    access: 'viewer',
    status: 200,
    query: timeRangeQuery,
    response: json(presenceHistorySchema),
  },
  getDeviceEvents: {
    method: 'get',
    path: '/api/v1/devices/{id}/events',
    summary: 'Events the device reported in a time range',
    tag: 'devices',
    access: 'viewer',
    status: 200,
    query: timeRangeQuery,
    response: json(deviceEventHistorySchema),
  },
  uploadConsole: {
    method: 'put',
    path: '/api/v1/devices/{id}/consoles/{artifact}/{version}',
    summary: `A device uploads the console of a VM it runs (text/plain, device Basic auth); replaces the earlier upload, keeps the last ${CONSOLE_MAX_BYTES / 1024} KiB`,
    tag: 'devices',
    access: 'device',
    status: 200,
    body: text('what the VM printed on its console'),
    response: json(consoleSummarySchema),
  },
  listConsoles: {
    method: 'get',
    path: '/api/v1/devices/{id}/consoles',
    summary: "The device's captured VM consoles, newest first: artifact, version, size, updatedAt",
    tag: 'devices',
    access: 'viewer',
    status: 200,
    response: json(consoleListSchema),
  },
  getConsole: {
    method: 'get',
    path: '/api/v1/devices/{id}/consoles/{artifact}/{version}',
    summary: 'One captured console as text (the tail the device last uploaded)',
    tag: 'devices',
    access: 'viewer',
    status: 200,
    response: text('the console text'),
    responseHeaders: { 'x-console-updated-at': 'when the device uploaded it, ms since the epoch' },
  },

  // Provisioning and tokens
  createProvisioningToken: {
    method: 'post',
    path: '/api/v1/provisioning-tokens',
    summary: 'Create a fleet provisioning token that agents use to register themselves',
    tag: 'provisioning',
    access: 'operator',
    status: 201,
    body: json(createProvisioningTokenBody),
    response: json(createdProvisioningTokenSchema),
  },
  provision: {
    method: 'post',
    path: '/api/v1/provision',
    summary: 'Agent self-registration with a provisioning token (Bearer); returns device credentials',
    tag: 'provisioning',
    access: 'provisioning-token',
    status: 201,
    body: json(provisionBody),
    response: json(provisionedDeviceSchema),
  },
  requestDeviceCertificate: {
    method: 'post',
    path: '/api/v1/device-certificate',
    summary:
      "A client certificate of the fleet CA for the device's key (mTLS), for a device that proves its secret " +
      "(HTTP Basic deviceId:secret); the request's subject CN must be the device id. `certificatePem` is null when " +
      'the fleet issues none (BOARDFLEET_DEVICE_CERTIFICATES=off); renewals go over MQTT',
    tag: 'provisioning',
    access: 'device',
    status: 200,
    body: json(requestDeviceCertificateBody),
    response: json(issuedDeviceCertificateSchema),
  },
  getMqttEndpoint: {
    method: 'get',
    path: '/api/v1/mqtt-endpoint',
    summary:
      "Where agents reach the fleet's MQTT broker (BOARDFLEET_MQTT_PUBLIC_URL, or the host the request used plus the MQTT port). " +
      'A device that sends its Basic credentials is first registered with the broker if it has no credential there (a fleet moved to Mosquitto); 429 with Retry-After after repeated wrong ones',
    tag: 'provisioning',
    access: 'public',
    status: 200,
    headers: { Authorization: 'optional: Basic deviceId:secret' },
    response: json(mqttEndpointSchema),
  },
  createOperatorToken: {
    method: 'post',
    path: '/api/v1/operator-tokens',
    summary: 'Create an operator API token with a role (admin, operator, viewer)',
    tag: 'operations',
    access: 'admin',
    status: 201,
    body: json(createOperatorTokenBody),
    response: json(createdOperatorTokenSchema),
  },
  listTokens: {
    method: 'get',
    path: '/api/v1/tokens',
    summary:
      'Every operator and provisioning token: kind, name, role, state, created, expires, uses of max uses, what it fixes; never the secret',
    tag: 'operations',
    access: 'admin',
    status: 200,
    response: json(tokenListSchema),
  },
  revokeToken: {
    method: 'delete',
    path: '/api/v1/tokens/{id}',
    summary:
      'Revoke an operator or provisioning token: it and its dashboard sessions stop at once (409 for the last active admin token)',
    tag: 'operations',
    access: 'admin',
    status: 200,
    response: json(tokenSchema),
  },
  getSession: {
    method: 'get',
    path: '/api/v1/me',
    summary: 'Whose token or dashboard session this is: its name and role',
    tag: 'session',
    access: 'viewer',
    status: 200,
    response: json(meSchema),
  },
  signIn: {
    method: 'post',
    path: '/api/v1/session',
    summary:
      "The dashboard's sign-in: checks an operator token and sets an HttpOnly, SameSite=Strict session cookie (needs the x-boardfleet-csrf header)",
    tag: 'session',
    access: 'public',
    status: 200,
    headers: { 'x-boardfleet-csrf': 'any value: proves the request comes from a page of this server' },
    body: json(signInBody),
    response: json(meSchema),
    responseHeaders: { 'Set-Cookie': 'boardfleet_session: the session, HttpOnly; SameSite=Strict; Path=/' },
  },
  signOut: {
    method: 'delete',
    path: '/api/v1/session',
    summary: "The dashboard's sign-out: ends the session and clears its cookie",
    tag: 'session',
    access: 'public',
    status: 200,
    response: json(emptyBody),
  },

  // Artifacts and releases
  uploadArtifact: {
    method: 'post',
    path: '/api/v1/artifacts',
    summary:
      'Upload an artifact: the body is the raw content (streamed); query: name, version (semver), kind, boards (comma-separated), sha256, size',
    tag: 'artifacts',
    access: 'operator',
    status: 201,
    query: artifactUploadQuery,
    body: binary('the content, exactly `size` bytes with the declared sha256'),
    response: json(artifactSchema),
  },
  listArtifacts: {
    method: 'get',
    path: '/api/v1/artifacts',
    summary: 'List artifacts, newest first',
    tag: 'artifacts',
    access: 'viewer',
    status: 200,
    query: listArtifactsQuery,
    response: json(artifactListSchema),
  },
  getArtifact: {
    method: 'get',
    path: '/api/v1/artifacts/{id}',
    summary: 'An artifact with its signed manifest and, when it has one, what its chunk index says',
    tag: 'artifacts',
    access: 'viewer',
    status: 200,
    response: json(artifactSchema),
  },
  downloadArtifact: {
    method: 'get',
    path: '/api/v1/artifacts/{id}/content',
    summary: 'Download the content; supports Range requests (resume). Operator token or device Basic auth',
    tag: 'artifacts',
    access: 'operator-or-device',
    status: 200,
    headers: { Range: 'bytes=N- to resume a download' },
    response: binary('the content (206 with the requested range)'),
    responseHeaders: { 'x-artifact-sha256': 'the sha256 of the whole content' },
  },
  getArtifactChunkIndex: {
    method: 'get',
    path: `/api/v1/artifacts/{id}/${CHUNK_HTTP.indexPath}`,
    summary:
      'The chunk index of a deployable artifact, for delta updates (protocol/chunk-index.ts); 404 when it has none. Operator token or device Basic auth, as for the content',
    tag: 'artifacts',
    access: 'operator-or-device',
    status: 200,
    query: chunkIndexQuery,
    response: binary(
      `the binary chunk index; with \`${CHUNK_HTTP.baseQuery}\` naming an index the server holds, its delta (encodeChunkIndexDelta) when that is smaller`,
    ),
    responseHeaders: {
      [CHUNK_HTTP.sha256Header]: 'the sha256 of the full index',
      [CHUNK_HTTP.signatureHeader]:
        'ed25519 signature by the fleet key of `chunkIndexStatement(sha256)`, base64',
      [CHUNK_HTTP.encodingHeader]: '`full` (the index) or `delta` (a delta of the base index)',
    },
  },
  fetchArtifactChunks: {
    method: 'post',
    path: `/api/v1/artifacts/{id}/${CHUNK_HTTP.chunksPath}`,
    summary:
      'Chunks of an artifact by their positions in its chunk index, for delta updates; 404 when it has no index. Operator token or device Basic auth, as for the content',
    tag: 'artifacts',
    access: 'operator-or-device',
    status: 200,
    body: json(chunkRequestBody),
    response: binary(
      `${CHUNK_HTTP.chunksMediaType}: the chunks' bytes concatenated in the order asked, as one brotli stream; each chunk's length is in the index`,
    ),
  },
  getFleetKey: {
    method: 'get',
    path: '/api/v1/fleet-key',
    summary: "The fleet's ed25519 public key (PEM) that agents verify manifests with",
    tag: 'artifacts',
    access: 'public',
    status: 200,
    response: json(fleetKeySchema),
  },
  createRelease: {
    method: 'post',
    path: '/api/v1/releases',
    summary:
      'Create a release: a name plus one artifact per board (or `*` for every board an artifact lists)',
    tag: 'releases',
    access: 'operator',
    status: 201,
    body: json(createReleaseBody),
    response: json(releaseSchema),
  },
  listReleases: {
    method: 'get',
    path: '/api/v1/releases',
    summary: 'List releases, newest first',
    tag: 'releases',
    access: 'viewer',
    status: 200,
    query: listReleasesQuery,
    response: json(releaseListSchema),
  },
  getRelease: {
    method: 'get',
    path: '/api/v1/releases/{idOrName}',
    summary: 'A release by id or name',
    tag: 'releases',
    access: 'viewer',
    status: 200,
    response: json(releaseSchema),
  },

  // Rollouts
  createRollout: {
    method: 'post',
    path: '/api/v1/rollouts',
    summary: 'Start a staged rollout of a release to a target, in waves',
    tag: 'rollouts',
    access: 'operator',
    status: 201,
    body: json(createRolloutBody),
    response: json(rolloutSchema),
  },
  previewRollout: {
    method: 'post',
    path: '/api/v1/rollouts/preview',
    summary: 'How many devices each wave would get, without starting anything',
    tag: 'rollouts',
    access: 'operator',
    status: 200,
    body: json(createRolloutBody),
    response: json(rolloutPreviewSchema),
  },
  listRollouts: {
    method: 'get',
    path: '/api/v1/rollouts',
    summary: 'List rollouts, newest first',
    tag: 'rollouts',
    access: 'viewer',
    status: 200,
    response: json(rolloutListSchema),
  },
  getRollout: {
    method: 'get',
    path: '/api/v1/rollouts/{id}',
    summary: 'Live status: waves with counts, devices with state, progress and failure reason, history',
    tag: 'rollouts',
    access: 'viewer',
    status: 200,
    response: json(rolloutStatusSchema),
  },
  actOnRollout: {
    method: 'post',
    path: '/api/v1/rollouts/{id}/{action}',
    summary: 'pause, resume, abort, or approve the next wave',
    tag: 'rollouts',
    access: 'operator',
    status: 200,
    params: rolloutActionParams,
    body: noBody,
    response: json(rolloutStatusSchema),
  },

  // Builds
  createBuild: {
    method: 'post',
    path: '/api/v1/builds',
    summary: 'Queue an image build of a recipe for a board',
    tag: 'builds',
    access: 'operator',
    status: 202,
    body: json(createBuildBody),
    response: json(buildJobSchema),
  },
  listBuilds: {
    method: 'get',
    path: '/api/v1/builds',
    summary: 'Build jobs, newest first',
    tag: 'builds',
    access: 'viewer',
    status: 200,
    query: listBuildsQuery,
    response: json(buildListSchema),
  },
  getBuild: {
    method: 'get',
    path: '/api/v1/builds/{id}',
    summary: 'A build: state, current step, progress, error, stored outputs',
    tag: 'builds',
    access: 'viewer',
    status: 200,
    response: json(buildJobSchema),
  },
  getBuildLog: {
    method: 'get',
    path: '/api/v1/builds/{id}/log',
    summary: 'The build log as text, from a byte offset (X-Log-Offset says where it ends)',
    tag: 'builds',
    access: 'viewer',
    status: 200,
    query: buildLogQuery,
    response: text('the log from `offset` on'),
    responseHeaders: { 'X-Log-Offset': 'the byte offset where this text ends: the next read starts there' },
  },
  watchBuild: {
    method: 'get',
    path: '/api/v1/builds/{id}/events',
    summary:
      'Live log and status as server-sent events (`log`, `status`, `end`); the event id is the log offset, so a reconnect with Last-Event-ID misses nothing',
    tag: 'builds',
    access: 'viewer',
    status: 200,
    headers: { 'Last-Event-ID': 'the id of the last event received: the stream resumes after it' },
    response: events(buildEvents, 'the log line by line, the job on each change, then `end`'),
  },
  cancelBuild: {
    method: 'post',
    path: '/api/v1/builds/{id}/cancel',
    summary: 'Cancel a queued or running build',
    tag: 'builds',
    access: 'operator',
    status: 200,
    body: noBody,
    response: json(buildJobSchema),
  },

  // The audit log: read only, no route changes or deletes an entry
  listAuditEntries: {
    method: 'get',
    path: '/api/v1/audit',
    summary:
      'The audit log, newest first: every operator action with who (token name and id, token or dashboard session), when, ' +
      'what, on what, and whether it worked (with the error message when not). Filters: since (ms since the epoch or an ' +
      'ISO date/time), actor (token name or id), limit. Entries are never changed or deleted',
    tag: 'audit',
    access: 'viewer',
    status: 200,
    query: listAuditQuery,
    response: json(auditLogSchema),
  },

  // The fleet's TUF repository: public signed metadata, and the operators' side of its keys
  getTufMetadata: {
    method: 'get',
    path: '/tuf/{file}',
    summary:
      "The fleet's TUF repository, for any stock TUF client: root.json and N.root.json (each root version, for " +
      'following the chain), timestamp.json, and snapshot and targets (N.snapshot.json, N.targets.json: consistent ' +
      'snapshots; snapshot.json and targets.json are the newest). targets.json lists every artifact as ' +
      'artifacts/<name>/<version> and every rollback order as rollback-orders/<id>. Target files are not served ' +
      'here: artifacts are downloaded through /api/v1/artifacts/{id}/content and checked against their target. ' +
      '404 (naming `boardfleet keys init`) until an operator publishes the first root',
    tag: 'tuf',
    access: 'public',
    status: 200,
    params: tufMetadataParams,
    response: json(tufMetadataDocument),
  },
  getTufStatus: {
    method: 'get',
    path: '/api/v1/tuf/online-keys',
    summary:
      'The current root, the public keys of the online roles (targets, snapshot, timestamp: the active one and any ' +
      'pending one a rotation made), and the newest version of each online document',
    tag: 'tuf',
    access: 'viewer',
    status: 200,
    response: json(tufStatusSchema),
  },
  publishTufRoot: {
    method: 'post',
    path: '/api/v1/tuf/root',
    summary:
      'Publish the next root, signed offline (`boardfleet keys`): version current+1 (1 for the first), signed by a ' +
      "threshold of its own root keys and, after the first, of the previous root's; its targets, snapshot and " +
      'timestamp roles must each name one key the server holds for that role (a pending key becomes the one it ' +
      'signs with). 400 naming the check that failed; 409 when another version was published meanwhile',
    tag: 'tuf',
    access: 'admin',
    status: 201,
    body: json(tufRootDocument),
    response: json(tufStatusSchema),
  },
  rotateTufOnlineKey: {
    method: 'post',
    path: '/api/v1/tuf/online-keys/rotate',
    summary:
      'Make a pending key for an online role (targets, snapshot or timestamp). The current key signs until a root ' +
      'naming the pending one is published; a role that already has a pending key gets that one back',
    tag: 'tuf',
    access: 'admin',
    status: 201,
    body: json(rotateOnlineKeyBody),
    response: json(rotatedOnlineKeySchema),
  },
  createRollbackOrder: {
    method: 'post',
    path: '/api/v1/tuf/rollback-orders',
    summary:
      'Issue a signed rollback order for a device or a release, from a version to an older one: it is listed in ' +
      'targets.json (rollback-orders/<id>) so a device can tell a real rollback from a downgrade attack',
    tag: 'tuf',
    access: 'admin',
    status: 201,
    body: json(createRollbackOrderBody),
    response: json(rollbackOrderSchema),
  },

  // Fleet, live changes, the server itself
  getFleetSummary: {
    method: 'get',
    path: '/api/v1/fleet/summary',
    summary:
      'The fleet at a glance over devices not revoked: total, online, offline, counts by board (reported, else ' +
      'registered; "unknown" when neither) and by running version ("none" when the device reports none). ' +
      'Failing health: online devices whose latest heartbeat has under 10 % disk or memory free or a CPU at ' +
      '80 °C or more, or with an attached board that does not answer Firmata; failingDevices lists the first 20 ' +
      'by name with the reason.',
    tag: 'fleet',
    access: 'viewer',
    status: 200,
    response: json(fleetSummarySchema),
  },
  watchLive: {
    method: 'get',
    path: '/api/v1/live',
    summary:
      'Live changes as server-sent events, each with an id and JSON data: hello {serverTime} on connect, ' +
      'presence {deviceId, online}, health {deviceId, sample}, device-event {deviceId, event}, ' +
      'rollout {rolloutId, state, reason, waves[{index, name, state, counts}]} (at most 4 a second per rollout), ' +
      'build {job}; a comment every 15 s keeps the connection open. Events are not replayed: after every ' +
      '(re)connect a client reads the snapshots it shows (device list, fleet summary, rollout status…) again ' +
      'and then applies events, so its view is correct after a reconnect. Authenticate with the ' +
      'Authorization header (read the stream with fetch, not EventSource).',
    tag: 'live',
    access: 'viewer',
    status: 200,
    query: liveQuery,
    response: events(liveEvents, 'changes as they happen, `hello` first'),
  },
  healthz: {
    method: 'get',
    path: '/healthz',
    summary:
      'Liveness: 200 while the server and its database work, 503 (degraded, with the reason) while the database is away',
    tag: 'operations',
    access: 'public',
    status: 200,
    response: json(healthzSchema),
  },
  metrics: {
    method: 'get',
    path: '/metrics',
    summary: 'Prometheus metrics (text exposition format)',
    tag: 'operations',
    access: 'public',
    status: 200,
    response: text('metrics in the Prometheus text format, version 0.0.4'),
  },
  ...logOperations,
  ...shellOperations,
  ...configOperations,
  ...webhookOperations,
} as const satisfies Record<string, ApiOperation>;

export type OperationId = keyof typeof operations;
