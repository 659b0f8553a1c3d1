import type { Generated } from 'kysely';
import type { AuditChannel, AuditOutcome } from '../../protocol/api/audit.ts';
import type { DeploymentState, RolloutState, WaveState } from '../../protocol/api/rollouts.ts';
import type { ArtifactKind } from '../../protocol/manifest.ts';
import type { OnlineRole, TopLevelRole } from '../../protocol/tuf/metadata.ts';

/** Timestamps are milliseconds since the Unix epoch in BIGINT columns on both dialects. */
export interface DeviceTable {
  id: string;
  name: string;
  board: string | null;
  secret_hash: string | null;
  created_at: number;
  revoked_at: number | null;
  online: number;
  presence_changed_at: number | null;
  last_seen_at: number | null;
  inventory: string | null;
  inventory_at: number | null;
  /** The version in the inventory's active slot. */
  running_version: string | null;
  /** The board the device's inventory reports (the registered `board` may be unset or differ). */
  reported_board: string | null;
  /** Why the latest heartbeat looks unhealthy; null when it does not. */
  health_problem: string | null;
  /** Why an attached board looks unhealthy (it does not answer Firmata); null when none does. */
  attached_board_problem: string | null;
}

export interface DeviceTagTable {
  device_id: string;
  tag: string;
}

export interface OperatorTokenTable {
  id: string;
  name: string;
  role: 'admin' | 'operator' | 'viewer';
  token_hash: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

/** A dashboard session: the cookie holds a secret whose sha256 is `id_hash`. */
export interface OperatorSessionTable {
  id_hash: string;
  token_id: string;
  created_at: number;
  expires_at: number;
}

export interface ProvisioningTokenTable {
  id: string;
  name: string;
  token_hash: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  uses: number;
  max_uses: number | null;
  board: string | null;
  /** JSON array of the tags every device it registers gets; null when it fixes none. */
  tags: string | null;
}

export interface HealthSampleTable {
  id: Generated<number>;
  device_id: string;
  at: number;
  received_at: number;
  uptime_seconds: number;
  load1: number;
  load5: number;
  load15: number;
  memory_total_bytes: number;
  memory_available_bytes: number;
  disk_total_bytes: number;
  disk_free_bytes: number;
  cpu_temperature_celsius: number | null;
  agent_rss_bytes: number;
}

export interface PresenceHistoryTable {
  id: Generated<number>;
  device_id: string;
  at: number;
  state: 'online' | 'offline';
  reason: string;
}

export interface DeviceEventTable {
  device_id: string;
  event_id: string;
  at: number;
  received_at: number;
  type: string;
  deployment_id: string | null;
  message: string | null;
  data: string | null;
}

export interface ArtifactTable {
  id: string;
  name: string;
  version: string;
  kind: ArtifactKind;
  /** JSON array of board ids. */
  boards: string;
  sha256: string;
  size: number;
  created_at: number;
  /** The exact signed bytes (canonical JSON), so the signature can be checked as stored. */
  manifest: string;
  signature: string;
}

/** The chunk index of a chunked artifact (delta updates); the index itself is a blob of the artifact store. */
export interface ArtifactChunkIndexTable {
  artifact_id: string;
  index_sha256: string;
  index_size: number;
  /** The fleet key's ed25519 signature of `chunkIndexStatement(index_sha256)`, base64. */
  signature: string;
  chunk_count: number;
  /** Chunks (and their bytes) the store did not hold before this artifact. */
  new_chunk_count: number;
  new_chunk_bytes: number;
  created_at: number;
}

export interface ReleaseTable {
  id: string;
  name: string;
  created_at: number;
}

export interface ReleaseArtifactTable {
  release_id: string;
  /** A board id, or `*` for every board the artifact lists. */
  board: string;
  artifact_id: string;
}

export interface RolloutTable {
  id: string;
  name: string;
  release_id: string;
  target: string;
  options: string;
  /** Like the wave and device states: only the words of the engine's transition tables are written. */
  state: RolloutState;
  reason: string | null;
  created_at: number;
  updated_at: number;
}

export interface RolloutWaveTable {
  rollout_id: string;
  wave_index: number;
  name: string;
  config: string;
  state: WaveState;
  started_at: number | null;
  finished_at: number | null;
}

export interface RolloutDeviceTable {
  rollout_id: string;
  device_id: string;
  wave_index: number;
  deployment_id: string;
  state: DeploymentState;
  attempt: number;
  artifact_id: string | null;
  /** JSON array of the other artifacts of a composite release this device got; null for one artifact. */
  part_artifact_ids: string | null;
  /** JSON of the device's desired deployment before this rollout moved it: what a rollback sends back. */
  previous_deployment: string | null;
  progress: number | null;
  /** `full` or `delta`, once the device has its artifact. */
  transfer_mode: 'full' | 'delta' | null;
  transfer_bytes: number | null;
  artifact_bytes: number | null;
  reason: string | null;
  notified_at: number | null;
  soak_until: number | null;
  state_changed_at: number;
}

export interface DeviceDesiredTable {
  device_id: string;
  version: number;
  payload: string;
  /** The version of the artifact the payload's deployment names (after a rollback, the one gone back to). */
  deployment_version: string | null;
  updated_at: number;
  /** When the broker took the payload (PUBACK); null while a replica may have died before sending it. */
  published_at: number | null;
}

/** A remote shell session (migration 20261225T1200); `ended_at` null while it is open. */
export interface ShellSessionTable {
  id: string;
  device_id: string;
  /** The operator token's name; a dashboard session acts as the token it was opened with. */
  actor: string;
  actor_token_id: string;
  via: AuditChannel;
  /** The one command of `shell -c`; null for an interactive shell. */
  command: string | null;
  /** pty or pipes, as the device said; null until it answered. */
  mode: string | null;
  started_at: number;
  ended_at: number | null;
  end_reason: string | null;
  exit_code: number | null;
  bytes_in: number;
  bytes_out: number;
  /** What the shell printed (BOARDFLEET_SHELL_TRANSCRIPTS=on), capped; null when not kept. */
  transcript: string | null;
}

/** A configuration variable at one scope (migration 20261225T1100). */
export interface ConfigVariableTable {
  scope: 'fleet' | 'tag' | 'device';
  /** '' for the fleet, the tag, or the device id. */
  target: string;
  name: string;
  value: string;
  /** 1: write-only, never answered by the API. */
  secret: number;
  updated_at: number;
  /** The operator token's name that set it. */
  updated_by: string;
}

/** A webhook (migration 20261225T1000); `events` is a JSON array of event types. */
export interface WebhookTable {
  id: string;
  url: string;
  events: string;
  /** The HMAC key of its signatures: kept as given, signing needs it. */
  secret: string;
  created_at: number;
  created_by: string;
}

/** One event queued for one webhook; (webhook_id, event_key) is unique. */
export interface WebhookDeliveryTable {
  id: string;
  webhook_id: string;
  event_key: string;
  event_id: string;
  event_type: string;
  /** The exact JSON sent and signed. */
  body: string;
  created_at: number;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  next_attempt_at: number;
  /** A replica sending it holds it until then; a crashed one's claim runs out. */
  claimed_until: number | null;
  finished_at: number | null;
}

export interface WebhookAttemptTable {
  id: string;
  delivery_id: string;
  at: number;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

export interface RolloutLogTable {
  rollout_id: string;
  at: number;
  seq: number;
  message: string;
}

export interface BuildJobTable {
  id: string;
  recipe: string;
  board: string;
  state: string;
  step: string | null;
  progress: number;
  error: string | null;
  /** JSON array of {role, artifactId}: what the build stored as signed artifacts. */
  outputs: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  /** The replica running the build (server_replicas.id) while it runs. */
  claimed_by: string | null;
}

/** A server process sharing the database (one row each, kept fresh while it runs). */
export interface ServerReplicaTable {
  id: string;
  http_url: string;
  /** `embedded` or the external broker's URL: replicas must share one broker. */
  broker: string;
  /** Where the process runs: a replica on this host whose process has ended has gone at once. */
  host: string;
  pid: number;
  started_at: number;
  seen_at: number;
}

/** Work one replica at a time may do, held until `expires_at` unless renewed. */
export interface ServerLeaseTable {
  name: string;
  holder: string;
  expires_at: number;
}

/** The latest console capture a device uploaded for one artifact version (its tail, capped). */
export interface DeviceConsoleTable {
  device_id: string;
  artifact: string;
  version: string;
  text: string;
  /** Bytes of `text` in UTF-8. */
  size: number;
  updated_at: number;
}

/** Keys the server makes for itself, shared by every replica on the database (base64url). */
export interface ServerKeyTable {
  name: string;
  key: string;
  created_at: number;
}

/** One operator action; rows are only ever added (the database refuses UPDATE and DELETE). */
export interface AuditLogTable {
  id: Generated<number>;
  at: number;
  /** The operator token's name; a dashboard session acts as the token it was opened with. */
  actor: string;
  actor_token_id: string;
  via: AuditChannel;
  action: string;
  target: string | null;
  outcome: AuditOutcome;
  detail: string | null;
  reason: string | null;
}

/** A key the server signs one online TUF role with; a rotation adds the role's next generation. */
export interface TufOnlineKeyTable {
  key_id: string;
  role: OnlineRole;
  generation: number;
  /** The raw ed25519 public key, hex. */
  public_key: string;
  /** PKCS#8 PEM. */
  private_key: string;
  created_at: number;
}

/** One signed TUF document, byte for byte as served; (role, version) is unique. */
export interface TufMetadataTable {
  role: TopLevelRole;
  version: number;
  document: string;
  signed_at: number;
  expires_at: number;
  /** The online key that signed it; null for a root. */
  key_id: string | null;
  /** For targets: how many targets it lists. */
  target_count: number | null;
}

/** A rollback order: one device, or every device of a release, from a version to an older one. */
export interface TufRollbackOrderTable {
  id: string;
  device_id: string | null;
  release_name: string | null;
  from_version: string;
  to_version: string;
  issued_at: number;
}

export interface DatabaseSchema {
  shell_sessions: ShellSessionTable;
  tuf_online_keys: TufOnlineKeyTable;
  tuf_metadata: TufMetadataTable;
  tuf_rollback_orders: TufRollbackOrderTable;
  audit_log: AuditLogTable;
  server_keys: ServerKeyTable;
  device_consoles: DeviceConsoleTable;
  build_jobs: BuildJobTable;
  server_replicas: ServerReplicaTable;
  server_leases: ServerLeaseTable;
  rollouts: RolloutTable;
  rollout_waves: RolloutWaveTable;
  rollout_devices: RolloutDeviceTable;
  device_desired: DeviceDesiredTable;
  config_variables: ConfigVariableTable;
  webhooks: WebhookTable;
  webhook_deliveries: WebhookDeliveryTable;
  webhook_attempts: WebhookAttemptTable;
  rollout_log: RolloutLogTable;
  releases: ReleaseTable;
  release_artifacts: ReleaseArtifactTable;
  artifacts: ArtifactTable;
  artifact_chunk_indexes: ArtifactChunkIndexTable;
  devices: DeviceTable;
  device_tags: DeviceTagTable;
  operator_tokens: OperatorTokenTable;
  operator_sessions: OperatorSessionTable;
  provisioning_tokens: ProvisioningTokenTable;
  health_samples: HealthSampleTable;
  presence_history: PresenceHistoryTable;
  device_events: DeviceEventTable;
}
