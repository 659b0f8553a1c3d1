import { DeploymentReport, type DeploymentPart, type DesiredState } from '../../protocol/schemas.ts';

/**
 * The agent's update state machine, one table. The state is written to disk before each risky
 * step; after a crash or power cut the agent maps the saved state to where it resumes, so it
 * ends with the old version running or the new one committed, never in between.
 */
export enum UpdateState {
  Idle = 'idle',
  Downloading = 'downloading',
  Verifying = 'verifying',
  Installing = 'installing',
  AwaitingReboot = 'awaiting-reboot',
  HealthChecking = 'health-checking',
  Committed = 'committed',
  RollingBack = 'rolling-back',
  RolledBack = 'rolled-back',
  /**
   * Nothing was changed on the device (bad download or verification, or an install that refused
   * the artifact before touching what runs or boots), so the old version runs on; or a rollback
   * could not bring the old version back, which the reason says.
   */
  Failed = 'failed',
}

export enum UpdateEvent {
  Start = 'start',
  Downloaded = 'downloaded',
  Verified = 'verified',
  Installed = 'installed',
  NeedsReboot = 'needs-reboot',
  Rebooted = 'rebooted',
  Healthy = 'healthy',
  Unhealthy = 'unhealthy',
  /** A step failed before the running version was touched. */
  Rejected = 'rejected',
  RollbackDone = 'rollback-done',
}

export const UPDATE_TRANSITIONS: Record<UpdateState, Partial<Record<UpdateEvent, UpdateState>>> = {
  [UpdateState.Idle]: { [UpdateEvent.Start]: UpdateState.Downloading },
  [UpdateState.Downloading]: {
    [UpdateEvent.Downloaded]: UpdateState.Verifying,
    [UpdateEvent.Rejected]: UpdateState.Failed,
  },
  [UpdateState.Verifying]: {
    [UpdateEvent.Verified]: UpdateState.Installing,
    [UpdateEvent.Rejected]: UpdateState.Failed,
  },
  [UpdateState.Installing]: {
    [UpdateEvent.Installed]: UpdateState.HealthChecking,
    [UpdateEvent.NeedsReboot]: UpdateState.AwaitingReboot,
    [UpdateEvent.Unhealthy]: UpdateState.RollingBack,
    [UpdateEvent.Rejected]: UpdateState.Failed,
  },
  [UpdateState.AwaitingReboot]: {
    [UpdateEvent.Rebooted]: UpdateState.HealthChecking,
    [UpdateEvent.Unhealthy]: UpdateState.RollingBack,
  },
  [UpdateState.HealthChecking]: {
    [UpdateEvent.Healthy]: UpdateState.Committed,
    [UpdateEvent.Unhealthy]: UpdateState.RollingBack,
  },
  [UpdateState.RollingBack]: {
    [UpdateEvent.RollbackDone]: UpdateState.RolledBack,
    [UpdateEvent.Unhealthy]: UpdateState.Failed,
  },
  [UpdateState.Committed]: { [UpdateEvent.Start]: UpdateState.Downloading },
  [UpdateState.RolledBack]: { [UpdateEvent.Start]: UpdateState.Downloading },
  [UpdateState.Failed]: { [UpdateEvent.Start]: UpdateState.Downloading },
};

/**
 * Where a saved state resumes after the agent restarts (a crash, a kill -9, a power cut or the
 * reboot an update asked for). Each step is idempotent, so resuming re-runs it: a download
 * continues from its partial file, an install writes the same version into the same place again,
 * `awaiting-reboot` asks the strategy whether the device rebooted into the new version (and asks
 * for the reboot again when it did not reboot at all), a health check starts again, and a
 * rollback that needed a reboot finds the old version running and finishes.
 */
export const RESUME_STATE: Record<UpdateState, UpdateState> = {
  [UpdateState.Idle]: UpdateState.Idle,
  [UpdateState.Downloading]: UpdateState.Downloading,
  [UpdateState.Verifying]: UpdateState.Verifying,
  [UpdateState.Installing]: UpdateState.Installing,
  [UpdateState.AwaitingReboot]: UpdateState.AwaitingReboot,
  [UpdateState.HealthChecking]: UpdateState.HealthChecking,
  [UpdateState.Committed]: UpdateState.Committed,
  [UpdateState.RollingBack]: UpdateState.RollingBack,
  [UpdateState.RolledBack]: UpdateState.RolledBack,
  [UpdateState.Failed]: UpdateState.Failed,
};

export const TERMINAL_UPDATE_STATES: readonly UpdateState[] = [
  UpdateState.Idle,
  UpdateState.Committed,
  UpdateState.RolledBack,
  UpdateState.Failed,
];

/** Entering the same state this many times for one deployment means a crash loop: roll back. */
export const MAX_STATE_ENTRIES = 3;

export interface RunningVersion {
  artifact: string;
  version: string;
}

/** What is saved to disk (versioned, written atomically) before each step. */
export interface UpdateRecord {
  schemaVersion: 1;
  state: UpdateState;
  deployment: NonNullable<DesiredState['deployment']> | null;
  /** What ran before this deployment: the rollback target. */
  previous: RunningVersion | null;
  /** What runs now, as far as the agent knows (reported in the inventory slots). */
  running: RunningVersion | null;
  entries: number;
  reason: string | null;
  /**
   * A newer deployment that arrived while the device was about to reboot for this one: applied
   * once this one has finished after the reboot. Absent in records written before it existed.
   */
  deferred?: NonNullable<DesiredState['deployment']> | null;
  /**
   * What each strategy runs now (the app, the attached board's firmware…), and what each ran
   * before this deployment: a composite deployment rolls each part back to its own. Absent in
   * records written before composite releases; `previous` stands in then.
   */
  runningByStrategy?: Partial<Record<DeploymentPart['strategy'], RunningVersion>>;
  previousByStrategy?: Partial<Record<DeploymentPart['strategy'], RunningVersion>>;
  /** How many of the deployment's parts (in install order) were installed: what a rollback undoes. */
  installedParts?: number;
}

/** What the server hears for each state (the protocol's deployment report words). */
export const REPORTED_AS: Partial<Record<UpdateState, DeploymentReport>> = {
  [UpdateState.Downloading]: DeploymentReport.Downloading,
  [UpdateState.Verifying]: DeploymentReport.Installing,
  [UpdateState.Installing]: DeploymentReport.Installing,
  [UpdateState.AwaitingReboot]: DeploymentReport.AwaitingReboot,
  // Committed here, after the device's own health check; the server commits after its soak.
  [UpdateState.Committed]: DeploymentReport.CommittedOnDevice,
  [UpdateState.Failed]: DeploymentReport.Failed,
  [UpdateState.RolledBack]: DeploymentReport.RolledBack,
};
