import type { z } from 'zod';
import { invalidRequest } from './errors.ts';

/** Validates a request body, listing every bad field in one 400 answer. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const parsed = schema.safeParse(body ?? {});
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`,
    );
    throw invalidRequest(`invalid request body: ${problems.join('; ')}`);
  }
  return parsed.data;
}
