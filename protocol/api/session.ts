import { z } from 'zod';
import { named } from './shared.ts';

/** Operator roles, least to most: viewers read, operators also change, admins also manage tokens. */
export const OPERATOR_ROLES = ['viewer', 'operator', 'admin'] as const;
export const operatorRoleSchema = z.enum(OPERATOR_ROLES);

/** The file in the server's data dir holding the admin token it wrote on first start (the CLI reads it). */
export const ADMIN_TOKEN_FILE = 'admin.token';

/** `GET /api/v1/me`: whose token this is. */
export const meSchema = named('Me', z.object({ name: z.string(), role: operatorRoleSchema }));

export const createOperatorTokenBody = named(
  'CreateOperatorToken',
  z.strictObject({
    name: z.string().min(1).max(128),
    role: operatorRoleSchema,
  }),
);

/** A new token: the secret is shown this once, the server keeps only its hash. */
export const createdOperatorTokenSchema = named(
  'CreatedOperatorToken',
  z.object({ id: z.string(), token: z.string() }),
);

export type OperatorRole = z.infer<typeof operatorRoleSchema>;
export type Me = z.infer<typeof meSchema>;
export type CreateOperatorToken = z.infer<typeof createOperatorTokenBody>;
export type CreatedOperatorToken = z.infer<typeof createdOperatorTokenSchema>;
