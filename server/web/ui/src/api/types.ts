/**
 * The JSON the dashboard reads and sends: the REST contract's own types (type-only imports, so no
 * schema code reaches the browser bundle).
 */
export type { Artifact } from '../../../../../protocol/api/artifacts.ts';
export type { AuditEntry, AuditLog } from '../../../../../protocol/api/audit.ts';
export type { BuildJob } from '../../../../../protocol/api/builds.ts';
export type { DeviceConfig } from '../../../../../protocol/api/config-variables.ts';
export type {
  Device,
  DeviceDeployment as Deployment,
  DeviceDetails,
  DevicePage,
  PresenceChange,
  StoredHealth,
} from '../../../../../protocol/api/devices.ts';
export type { FleetSummary } from '../../../../../protocol/api/fleet.ts';
export type { LiveEvents } from '../../../../../protocol/api/live.ts';
export type { Release } from '../../../../../protocol/api/releases.ts';
export type {
  Rollout,
  RolloutPreview,
  RolloutStatus,
  RolloutStatusDevice,
  RolloutSummary,
  RolloutWave,
  /** A wave as the create form sends it: settings left out take the server's defaults. */
  WaveConfigInput as WaveConfig,
} from '../../../../../protocol/api/rollouts.ts';
export type { Me } from '../../../../../protocol/api/session.ts';
export type {
  CreatedWebhook,
  Webhook,
  WebhookDelivery,
  WebhookDeliveryList,
  WebhookList,
} from '../../../../../protocol/api/webhooks.ts';
export type { Health, Inventory } from '../../../../../protocol/schemas.ts';
