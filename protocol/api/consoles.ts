/** VM consoles a device uploads per artifact version, for operators to read back. */
import { z } from 'zod';
import { named, timestamp } from './shared.ts';

export const consoleSummarySchema = named(
  'ConsoleSummary',
  z.object({
    artifact: z.string(),
    version: z.string(),
    size: z.number().int().describe('bytes kept (the tail of what the VM printed)'),
    updatedAt: timestamp,
  }),
);

export const consoleListSchema = named(
  'ConsoleList',
  z.object({
    consoles: z.array(consoleSummarySchema).describe('newest first'),
  }),
);

export type ConsoleSummary = z.infer<typeof consoleSummarySchema>;
export type ConsoleList = z.infer<typeof consoleListSchema>;
