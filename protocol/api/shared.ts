import { z } from 'zod';

/**
 * Names the schemas the OpenAPI document lists as components. Every JSON body, answer and event
 * in the operations table is named; the document refers to it by that name.
 */
export const apiComponents = z.registry<{ id: string }>();

export function named<T extends z.ZodType>(id: string, schema: T): T {
  apiComponents.add(schema, { id });
  return schema;
}

/** Milliseconds since the Unix epoch, as every time in the API. */
export const timestamp = z.number().int().nonnegative().describe('milliseconds since the Unix epoch');

export const pageLimit = (defaultLimit: number) =>
  z.coerce.number().int().min(1).max(1000).default(defaultLimit);
export const pageOffset = z.coerce.number().int().min(0).default(0);

/** `limit` and `offset` of a paginated list, echoed back with the page. */
export const pageQuery = (defaultLimit: number) =>
  z.strictObject({ limit: pageLimit(defaultLimit), offset: pageOffset });

/** The fields of a page answer besides its items. */
export const pageFields = { limit: z.number().int(), offset: z.number().int() };

/**
 * The body of a write that takes no input (revoke, cancel, pause…): nothing, or an empty object.
 * Declared so every write has a request body in the contract; a field sent anyway is refused.
 */
export const emptyBody = named('EmptyBody', z.strictObject({}).describe('no fields: send nothing or {}'));

/** Every error answer: the HTTP status, a stable code to branch on, and a message a person can act on. */
export const apiErrorSchema = named(
  'ApiError',
  z.object({ statusCode: z.number().int(), code: z.string(), message: z.string() }),
);

export type EmptyBody = z.infer<typeof emptyBody>;
export type ApiError = z.infer<typeof apiErrorSchema>;
