/**
 * The requests of the chunk endpoints of delta updates. Apart from artifacts.ts, whose types the
 * dashboard reads: the chunk index module these follow needs Node.
 */
import { z } from 'zod';
import { CHUNK_HTTP } from '../chunk-index.ts';
import { sha256Hex } from './artifacts.ts';
import { named } from './shared.ts';

/** `GET …/chunk-index`: the sha256 of an index the caller holds, to be answered with a delta of it. */
export const chunkIndexQuery = z.strictObject({
  [CHUNK_HTTP.baseQuery]: sha256Hex
    .optional()
    .describe(
      'sha256 of a chunk index the caller holds (the version it runs): the answer may be a delta of it',
    ),
});

/** `POST …/chunks`: positions in the artifact's chunk index, answered in this order. */
export const chunkRequestBody = named(
  'ChunkRequest',
  z.strictObject({
    chunks: z
      .array(z.number().int().nonnegative())
      .min(1)
      .max(CHUNK_HTTP.maxChunksPerRequest)
      .describe('positions in the chunk index, each below its chunk count; repeats allowed'),
  }),
);
