/** Releases: a name plus one artifact per board, what a rollout deploys. */
import { z } from 'zod';
import { named, pageFields, pageQuery, timestamp } from './shared.ts';

export const createReleaseBody = named(
  'CreateRelease',
  z.strictObject({
    name: z.string().min(1).max(128),
    artifacts: z
      .record(z.string().min(1).max(64), z.string().min(1).max(64))
      .refine((map) => Object.keys(map).length > 0, 'at least one artifact')
      .describe('board id, or `*` for every board each artifact lists → artifact id'),
  }),
);

export const listReleasesQuery = pageQuery(100);

export const releaseSchema = named(
  'Release',
  z.object({
    id: z.string(),
    name: z.string(),
    createdAt: timestamp,
    artifacts: z.record(z.string(), z.string()).describe('board id (or `*`) → artifact id'),
  }),
);

export const releaseListSchema = named(
  'ReleaseList',
  z.object({ releases: z.array(releaseSchema), ...pageFields }),
);

export type CreateRelease = z.infer<typeof createReleaseBody>;
export type ListReleasesQuery = z.input<typeof listReleasesQuery>;
export type Release = z.infer<typeof releaseSchema>;
export type ReleaseList = z.infer<typeof releaseListSchema>;
