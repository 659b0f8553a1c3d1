import { DeploymentState, RolloutState, WaveState } from '../../protocol/api/rollouts.ts';
import { DeploymentReport } from '../../protocol/schemas.ts';

/**
 * The rollout engine's three state machines, each one transition table that reads like a table
 * (states × events → next state). Anything not in a table is refused, so an out-of-order or
 * repeated report cannot move a rollout, wave or device deployment backwards. The states are the
 * API's words (protocol/api/rollouts.ts); the events are the engine's own.
 */

export enum RolloutEvent {
  Pause = 'pause',
  Resume = 'resume',
  Abort = 'abort',
  WaveTripped = 'wave-tripped',
  AllWavesSucceeded = 'all-waves-succeeded',
}

/** A tripped wave pauses or aborts the rollout, per its `onTrip` setting (pause by default). */
export const ROLLOUT_TRANSITIONS: Record<RolloutState, Partial<Record<RolloutEvent, RolloutState>>> = {
  [RolloutState.Running]: {
    [RolloutEvent.Pause]: RolloutState.Paused,
    [RolloutEvent.Abort]: RolloutState.Aborted,
    [RolloutEvent.WaveTripped]: RolloutState.Paused,
    [RolloutEvent.AllWavesSucceeded]: RolloutState.Completed,
  },
  [RolloutState.Paused]: {
    [RolloutEvent.Resume]: RolloutState.Running,
    [RolloutEvent.Abort]: RolloutState.Aborted,
  },
  [RolloutState.Completed]: {},
  [RolloutState.Aborted]: {},
};

export enum WaveEvent {
  Start = 'start',
  /** The wave is set to wait for an operator's approval before it starts. */
  AwaitApproval = 'await-approval',
  SuccessThresholdReached = 'success-threshold-reached',
  ErrorThresholdCrossed = 'error-threshold-crossed',
  Approve = 'approve',
  /** An operator resumes a tripped wave (after fixing the cause); its failed devices stay failed. */
  Resume = 'resume',
  /** The rollout was aborted: a wave that had not finished never will (a tripped one keeps saying why). */
  Abort = 'abort',
}

export const WAVE_TRANSITIONS: Record<WaveState, Partial<Record<WaveEvent, WaveState>>> = {
  [WaveState.Pending]: {
    [WaveEvent.Start]: WaveState.Running,
    [WaveEvent.AwaitApproval]: WaveState.AwaitingApproval,
    [WaveEvent.Abort]: WaveState.Aborted,
  },
  [WaveState.Running]: {
    [WaveEvent.SuccessThresholdReached]: WaveState.Succeeded,
    [WaveEvent.ErrorThresholdCrossed]: WaveState.Tripped,
    [WaveEvent.Abort]: WaveState.Aborted,
  },
  [WaveState.AwaitingApproval]: {
    [WaveEvent.Approve]: WaveState.Running,
    [WaveEvent.Abort]: WaveState.Aborted,
  },
  [WaveState.Succeeded]: {},
  [WaveState.Tripped]: { [WaveEvent.Resume]: WaveState.Running },
  [WaveState.Aborted]: {},
};

export enum DeploymentEvent {
  Notify = 'notify',
  DownloadStarted = 'download-started',
  InstallStarted = 'install-started',
  RebootPending = 'reboot-pending',
  /** The agent installed, passed its own health check and committed on the device: the soak starts. */
  Installed = 'installed',
  SoakPassed = 'soak-passed',
  /** The device failed, went offline or unhealthy within the soak, or timed out. */
  Fail = 'fail',
  /** The agent reports it is running the previous version again. */
  RolledBack = 'rolled-back',
  Retry = 'retry',
  /**
   * The rollout was aborted: the server sends the device back to what it ran before. Devices at
   * work always go back; committed and failed ones only when the rollout says `rollbackOnAbort`.
   */
  Abort = 'abort',
}

/** How the engine reads each word an agent reports (`DeploymentReport` in the protocol). */
export const DEPLOYMENT_EVENT_BY_REPORT: Record<DeploymentReport, DeploymentEvent> = {
  [DeploymentReport.Downloading]: DeploymentEvent.DownloadStarted,
  [DeploymentReport.Installing]: DeploymentEvent.InstallStarted,
  [DeploymentReport.AwaitingReboot]: DeploymentEvent.RebootPending,
  [DeploymentReport.CommittedOnDevice]: DeploymentEvent.Installed,
  [DeploymentReport.Failed]: DeploymentEvent.Fail,
  [DeploymentReport.RolledBack]: DeploymentEvent.RolledBack,
};

const inFlight = {
  [DeploymentEvent.Fail]: DeploymentState.Failed,
  [DeploymentEvent.RolledBack]: DeploymentState.RolledBack,
  [DeploymentEvent.Abort]: DeploymentState.RolledBack,
} as const;

export const DEPLOYMENT_TRANSITIONS: Record<
  DeploymentState,
  Partial<Record<DeploymentEvent, DeploymentState>>
> = {
  [DeploymentState.Queued]: { [DeploymentEvent.Notify]: DeploymentState.Notified },
  [DeploymentState.Notified]: {
    ...inFlight,
    [DeploymentEvent.DownloadStarted]: DeploymentState.Downloading,
    [DeploymentEvent.InstallStarted]: DeploymentState.Installing,
    [DeploymentEvent.Installed]: DeploymentState.Soaking,
  },
  [DeploymentState.Downloading]: {
    ...inFlight,
    // Not a move: each progress report (and the last one's transfer figures) updates the row.
    [DeploymentEvent.DownloadStarted]: DeploymentState.Downloading,
    [DeploymentEvent.InstallStarted]: DeploymentState.Installing,
    [DeploymentEvent.Installed]: DeploymentState.Soaking,
  },
  [DeploymentState.Installing]: {
    ...inFlight,
    [DeploymentEvent.RebootPending]: DeploymentState.AwaitingReboot,
    [DeploymentEvent.Installed]: DeploymentState.Soaking,
  },
  [DeploymentState.AwaitingReboot]: { ...inFlight, [DeploymentEvent.Installed]: DeploymentState.Soaking },
  [DeploymentState.Soaking]: { ...inFlight, [DeploymentEvent.SoakPassed]: DeploymentState.Committed },
  [DeploymentState.Committed]: { [DeploymentEvent.Abort]: DeploymentState.RolledBack },
  [DeploymentState.Failed]: {
    [DeploymentEvent.Retry]: DeploymentState.Queued,
    [DeploymentEvent.RolledBack]: DeploymentState.RolledBack,
    [DeploymentEvent.Abort]: DeploymentState.RolledBack,
  },
  [DeploymentState.RolledBack]: { [DeploymentEvent.Retry]: DeploymentState.Queued },
};

/** Looks an event up in a table; null when the table has no such transition (the event is ignored). */
export function nextState<S extends string, E extends string>(
  table: Record<S, Partial<Record<E, S>>>,
  state: S,
  event: E,
): S | null {
  return table[state][event] ?? null;
}

/** Deployments that count toward a wave's error threshold. */
export const FAILED_DEPLOYMENT_STATES: readonly DeploymentState[] = [
  DeploymentState.Failed,
  DeploymentState.RolledBack,
];
/** Deployments the device is working on: they count toward `maxParallel`. */
export const ACTIVE_DEPLOYMENT_STATES: readonly DeploymentState[] = [
  DeploymentState.Notified,
  DeploymentState.Downloading,
  DeploymentState.Installing,
  DeploymentState.AwaitingReboot,
  DeploymentState.Soaking,
];
