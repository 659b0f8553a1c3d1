import type { DeploymentPart, DesiredState } from '../../protocol/schemas.ts';

type Deployment = NonNullable<DesiredState['deployment']>;

/** One artifact of a deployment, with the deployment's id (what its reports and downloads name). */
export type DeploymentStep = DeploymentPart & { id: string };

/**
 * The artifacts a deployment installs, in install order: an attached board's firmware before the
 * device's own app, so the new app starts against the firmware it was released with (and finds
 * the serial port free, not held by the flasher). A deployment of one artifact is one part.
 */
export function partsOf(deployment: Deployment): DeploymentStep[] {
  const { parts = [], ...own } = deployment;
  const all: DeploymentStep[] = [own, ...parts.map((part) => ({ ...part, id: deployment.id }))];
  return [
    ...all.filter((part) => part.strategy === 'mcu-serial'),
    ...all.filter((part) => part.strategy !== 'mcu-serial'),
  ];
}

/** "app 1.2.0 and firmata 2.1.0", for messages about a whole deployment. */
export function describeParts(deployment: Deployment): string {
  return partsOf(deployment)
    .map((part) => `${part.artifact} ${part.version}`)
    .join(' and ');
}
