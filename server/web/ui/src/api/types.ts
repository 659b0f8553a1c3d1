/**
 * The JSON the dashboard reads, as the server's routes answer it. Device payloads come from the
 * protocol's own schemas; the rest mirrors the server's records (which import Node-only code).
 */
import type { Health, Inventory } from '../../../../../protocol/schemas.ts';

export type { Health, Inventory };

export interface Device {
  id: string;
  name: string;
  board: string | null;
  tags: string[];
  createdAt: number;
  revokedAt: number | null;
  online: boolean;
  presenceChangedAt: number | null;
  lastSeenAt: number | null;
  inventory: Inventory | null;
  /** The active inventory slot's version. */
  runningVersion: string | null;
  /** What is wrong with its latest heartbeat ("disk 97% full"), null when fine. */
  healthProblem: string | null;
}

export interface DevicePage {
  devices: Device[];
  total: number;
  limit: number;
  offset: number;
}

export interface StoredHealth extends Health {
  receivedAt: number;
}

export interface DeviceDetails extends Device {
  latestHealth: StoredHealth | null;
}

export interface PresenceChange {
  at: number;
  state: 'online' | 'offline';
  reason: string;
}

/** One rollout's deployment to a device (`GET /api/v1/devices/:id/deployments`, newest first). */
export interface Deployment {
  rolloutId: string;
  rolloutName: string;
  rolloutState: RolloutState;
  createdAt: number;
  release: string;
  version: string | null;
  deploymentId: string;
  state: string;
  /** committed, failed or rolled-back once the deployment has ended; null while it runs. */
  outcome: string | null;
  reason: string | null;
  attempt: number;
  notifiedAt: number | null;
  stateChangedAt: number;
}

export interface FleetSummary {
  total: number;
  online: number;
  offline: number;
  byBoard: Record<string, number>;
  byVersion: Record<string, number>;
  failingHealth: number;
  failingDevices: { id: string; name: string; reason: string }[];
}

export interface Release {
  id: string;
  name: string;
  createdAt: number;
}

export interface WaveConfig {
  name?: string;
  canary?: string[];
  percent?: number;
  successThresholdPercent?: number;
  errorThresholdPercent?: number;
  soakSeconds?: number;
  requiresApproval?: boolean;
  maxParallel?: number;
  notifyRatePerMinute?: number | null;
}

export interface RolloutTarget {
  deviceIds?: string[];
  tags?: string[];
  boards?: string[];
}

export type RolloutState = 'running' | 'paused' | 'completed' | 'aborted';

export interface Rollout {
  id: string;
  name: string;
  releaseId: string;
  target: RolloutTarget;
  state: RolloutState;
  reason: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface WaveCounts {
  size: number;
  committed: number;
  failed: number;
  inProgress: number;
  queued: number;
  rolledBack: number;
}

export interface RolloutWave {
  index: number;
  name: string;
  config: WaveConfig;
  state: 'pending' | 'running' | 'awaiting-approval' | 'succeeded' | 'tripped';
  startedAt: number | null;
  finishedAt: number | null;
  counts: WaveCounts;
}

export interface RolloutDevice {
  deviceId: string;
  waveIndex: number;
  state: string;
  attempt: number;
  progress: number | null;
  reason: string | null;
  stateChangedAt: number;
}

export interface RolloutStatus extends Rollout {
  waves: RolloutWave[];
  devices: RolloutDevice[];
  log: { at: number; message: string }[];
}

export interface RolloutPreview {
  release: string;
  targetDevices: number;
  waves: { name: string; devices: string[] }[];
}

export interface BuildOutput {
  role: 'disk-image' | 'update-payload' | 'sbom' | 'build-log';
  artifactId: string;
  name: string;
  version: string;
  size: number;
  sha256: string;
}

export interface BuildJob {
  id: string;
  recipe: string;
  board: string;
  state: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  step: string | null;
  progress: number;
  error: string | null;
  outputs: BuildOutput[];
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
}

export interface Artifact {
  id: string;
  name: string;
  version: string;
  kind: string;
  boards: string[];
  sha256: string;
  size: number;
  createdAt: number;
  manifest: string;
  signature: string;
}
