/** Image builds: a queue of jobs, each turning a recipe into signed artifacts for a board. */
import { z } from 'zod';
import { named, pageFields, pageQuery, timestamp } from './shared.ts';

export const createBuildBody = named(
  'CreateBuild',
  z.strictObject({
    recipe: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'a recipe name from firmware-recipes/, e.g. pi-minimal'),
    board: z.string().min(1).max(64),
  }),
);

export const listBuildsQuery = pageQuery(50);

export const buildLogQuery = z.strictObject({
  offset: z.coerce
    .number()
    .int()
    .min(0)
    .default(0)
    .describe('the byte to read from (X-Log-Offset of the last read)'),
});

export const BUILD_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export const ENDED_BUILD_STATES = ['succeeded', 'failed', 'cancelled'] as const;
/**
 * What a build output is for: the disk image, the update payload (a Linux image's deployable
 * artifact), the unikernel bundle (a unikernel image's), the OCI image (a container's), the SBOM, the log.
 */
export const BUILD_OUTPUT_ROLES = [
  'disk-image',
  'update-payload',
  'unikernel',
  'oci-image',
  'sbom',
  'build-log',
] as const;

export const buildOutputSchema = named(
  'BuildOutput',
  z.object({
    role: z.enum(BUILD_OUTPUT_ROLES),
    artifactId: z.string(),
    name: z.string(),
    version: z.string(),
    size: z.number().int(),
    sha256: z.string(),
  }),
);

export const buildJobSchema = named(
  'BuildJob',
  z.object({
    id: z.string(),
    recipe: z.string(),
    board: z.string(),
    state: z.enum(BUILD_STATES),
    step: z.string().nullable().describe('what the build is doing now'),
    progress: z.number(),
    error: z.string().nullable(),
    outputs: z.array(buildOutputSchema).describe('the artifacts a finished build stored, by role'),
    createdAt: timestamp,
    startedAt: timestamp.nullable(),
    finishedAt: timestamp.nullable(),
  }),
);

export const buildListSchema = named(
  'BuildList',
  z.object({ builds: z.array(buildJobSchema).describe('newest first'), ...pageFields }),
);

/**
 * `GET /api/v1/builds/{id}/events`: the log line by line, the job on every change, and `end`
 * once it has ended. A `log` or `end` event's id is the log offset after it (resume with Last-Event-ID).
 */
export const buildEvents = {
  log: named('BuildLogLine', z.string().describe('one line of the build log')),
  status: buildJobSchema,
  end: named('BuildEnd', z.object({ state: z.enum(ENDED_BUILD_STATES) })),
};

export type CreateBuild = z.infer<typeof createBuildBody>;
export type ListBuildsQuery = z.input<typeof listBuildsQuery>;
export type BuildState = (typeof BUILD_STATES)[number];
export type EndedBuildState = (typeof ENDED_BUILD_STATES)[number];

export const hasBuildEnded = (state: BuildState): state is EndedBuildState =>
  (ENDED_BUILD_STATES as readonly string[]).includes(state);
export type BuildOutputRole = (typeof BUILD_OUTPUT_ROLES)[number];
export type BuildOutput = z.infer<typeof buildOutputSchema>;
export type BuildJob = z.infer<typeof buildJobSchema>;
export type BuildList = z.infer<typeof buildListSchema>;
export type BuildEvents = { [K in keyof typeof buildEvents]: z.infer<(typeof buildEvents)[K]> };
