/**
 * The rollout request schemas are part of the REST contract (protocol/api/rollouts.ts); the
 * rollout engine's modules name them from here.
 */
export {
  type CreateRollout,
  createRolloutBody,
  type RolloutOptions,
  type RolloutTarget,
  rolloutTargetSchema,
  type WaveConfig,
  waveConfigSchema,
} from '../../protocol/api/rollouts.ts';
