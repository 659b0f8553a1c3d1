/**
 * The steps a rollout plan is made of (what the planner decides, what the executor writes) and
 * the one place that looks state changes up in the transition tables while planning.
 */
import type { DeploymentState, RolloutState, WaveState } from '../../protocol/api/rollouts.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import type { RolloutDeviceRecord, RolloutRecord, WaveRecord } from './rollout.repository.ts';
import {
  DEPLOYMENT_TRANSITIONS,
  type DeploymentEvent,
  nextState,
  ROLLOUT_TRANSITIONS,
  type RolloutEvent,
  WAVE_TRANSITIONS,
  type WaveEvent,
} from './rollout-state-machine.ts';

export type DeviceChanges = Partial<Omit<RolloutDeviceRecord, 'deviceId' | 'waveIndex' | 'state'>>;
export type WaveChanges = { startedAt?: number; finishedAt?: number };

/** One change for the executor to write; a state change carries the event and the state the table gave. */
export type WriteStep =
  | { kind: 'add-devices'; devices: RolloutDeviceRecord[] }
  | {
      kind: 'move-device';
      deviceId: string;
      event: DeploymentEvent;
      state: DeploymentState;
      changes: DeviceChanges;
    }
  | { kind: 'move-wave'; waveIndex: number; event: WaveEvent; state: WaveState; changes: WaveChanges }
  | { kind: 'move-rollout'; event: RolloutEvent; state: RolloutState; reason: string | null; at: number }
  | { kind: 'log'; message: string; at: number }
  /** Write the device a new desired state with this deployment, and publish it. */
  | { kind: 'send-desired'; deviceId: string; deployment: DesiredState['deployment']; at: number };

/** Deliver the release to these queued devices (the executor picks each one's artifact): a tick's last step. */
export interface NotifyStep {
  kind: 'notify';
  waveIndex: number;
  releaseId: string;
  devices: RolloutDeviceRecord[];
  at: number;
}

export type RolloutStep = WriteStep | NotifyStep;

/** Devices notified in one transaction, at most. */
export const NOTIFY_PART_SIZE = 1_000;

/**
 * A plan's steps cut into transactions, in order: a notify of more than `NOTIFY_PART_SIZE`
 * devices goes in parts, one transaction each, and every other step with the part it precedes or
 * follows. Each part is whole on its own (a device moves with its desired state), so a plan cut
 * short by a lost connection leaves the rest of the wave queued for the next tick.
 */
export function transactionParts(steps: readonly RolloutStep[]): RolloutStep[][] {
  const parts: RolloutStep[][] = [[]];
  for (const step of steps) {
    if (step.kind !== 'notify') {
      parts.at(-1)?.push(step);
      continue;
    }
    for (let start = 0; start < step.devices.length; start += NOTIFY_PART_SIZE) {
      const current = parts.at(-1) as RolloutStep[];
      const part = { ...step, devices: step.devices.slice(start, start + NOTIFY_PART_SIZE) };
      if (current.some((earlier) => earlier.kind === 'notify')) parts.push([part]);
      else current.push(part);
    }
  }
  return parts.filter((part) => part.length > 0);
}

/**
 * The steps of one plan, and the working copies they change: a state change is looked up in its
 * transition table and applied to the copy, so the next decision sees it.
 */
export class Plan {
  readonly steps: WriteStep[] = [];

  constructor(readonly now: number) {}

  device(device: RolloutDeviceRecord, event: DeploymentEvent, changes: DeviceChanges = {}): boolean {
    const state = nextState(DEPLOYMENT_TRANSITIONS, device.state, event);
    if (!state) return false;
    // A state's loop to itself (download progress) is worth a write only for what it changes.
    const moves = state !== device.state;
    if (!moves && Object.keys(changes).length === 0) return false;
    const written = moves ? { ...changes, stateChangedAt: this.now } : { ...changes };
    Object.assign(device, written, { state });
    this.steps.push({ kind: 'move-device', deviceId: device.deviceId, event, state, changes: written });
    return true;
  }

  wave(wave: WaveRecord, event: WaveEvent, changes: WaveChanges = {}): boolean {
    const state = nextState(WAVE_TRANSITIONS, wave.state, event);
    if (!state) return false;
    Object.assign(wave, changes, { state });
    this.steps.push({ kind: 'move-wave', waveIndex: wave.index, event, state, changes });
    return true;
  }

  rollout(rollout: RolloutRecord, event: RolloutEvent, reason: string | null, message: string): boolean {
    const state = nextState(ROLLOUT_TRANSITIONS, rollout.state, event);
    if (!state) return false;
    Object.assign(rollout, { state, reason, updatedAt: this.now });
    this.steps.push({ kind: 'move-rollout', event, state, reason, at: this.now });
    this.log(message);
    return true;
  }

  log(message: string): void {
    this.steps.push({ kind: 'log', message, at: this.now });
  }

  addDevices(devices: readonly RolloutDeviceRecord[]): void {
    this.steps.push({ kind: 'add-devices', devices: devices.map((device) => ({ ...device })) });
  }

  sendDesired(deviceId: string, deployment: DesiredState['deployment']): void {
    this.steps.push({ kind: 'send-desired', deviceId, deployment, at: this.now });
  }
}
