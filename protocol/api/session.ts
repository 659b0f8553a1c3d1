import { z } from 'zod';
import { named, timestamp } from './shared.ts';
import { expiresInField } from './token-expiry.ts';

/** Operator roles, least to most: viewers read, operators also change, admins also manage tokens. */
export const OPERATOR_ROLES = ['viewer', 'operator', 'admin'] as const;
export const operatorRoleSchema = z.enum(OPERATOR_ROLES);

/** The file in the server's data dir holding the admin token it wrote on first start (the CLI reads it). */
export const ADMIN_TOKEN_FILE = 'admin.token';

/** The dashboard's session cookie: an opaque id the server keeps a row for, never the API token. */
export const SESSION_COOKIE = 'boardfleet_session';
/**
 * The header the dashboard sends with every request; a write authenticated by the session cookie
 * without it is refused (a cross-site form cannot set a header, and a cross-site script may not).
 */
export const CSRF_HEADER = 'x-boardfleet-csrf';

/** `GET /api/v1/me`: whose token this is. */
export const meSchema = named('Me', z.object({ name: z.string(), role: operatorRoleSchema }));

/** `POST /api/v1/session`: the dashboard's sign-in, with an operator token. */
export const signInBody = named('SignIn', z.strictObject({ token: z.string().min(1).max(256) }));

export const createOperatorTokenBody = named(
  'CreateOperatorToken',
  z.strictObject({
    name: z.string().min(1).max(128),
    role: operatorRoleSchema,
    expiresIn: expiresInField,
  }),
);

/** A new token: the secret is shown this once, the server keeps only its hash. */
export const createdOperatorTokenSchema = named(
  'CreatedOperatorToken',
  z.object({ id: z.string(), token: z.string(), expiresAt: timestamp.nullable() }),
);

export const TOKEN_KINDS = ['operator', 'provisioning'] as const;
export const TOKEN_STATES = ['active', 'expired', 'revoked', 'used-up'] as const;

/** One operator or provisioning token as `GET /api/v1/tokens` lists it: never its secret. */
export const tokenSchema = named(
  'Token',
  z.object({
    id: z.string(),
    kind: z.enum(TOKEN_KINDS),
    name: z.string(),
    role: operatorRoleSchema.nullable().describe('operator tokens only'),
    state: z.enum(TOKEN_STATES).describe('whether it is accepted now, and if not why'),
    createdAt: timestamp,
    expiresAt: timestamp.nullable(),
    revokedAt: timestamp.nullable(),
    uses: z.number().int().nullable().describe('devices registered with it (provisioning tokens only)'),
    maxUses: z.number().int().nullable(),
    board: z.string().nullable().describe('the board it fixes (provisioning tokens only)'),
    tags: z.array(z.string()).nullable().describe('the tags it fixes (provisioning tokens only)'),
  }),
);

export const tokenListSchema = named('TokenList', z.object({ tokens: z.array(tokenSchema) }));

export type OperatorRole = z.infer<typeof operatorRoleSchema>;
export type Me = z.infer<typeof meSchema>;
export type SignIn = z.infer<typeof signInBody>;
export type CreateOperatorToken = z.infer<typeof createOperatorTokenBody>;
export type CreatedOperatorToken = z.infer<typeof createdOperatorTokenSchema>;
export type TokenState = (typeof TOKEN_STATES)[number];
export type TokenInfo = z.infer<typeof tokenSchema>;
export type TokenList = z.infer<typeof tokenListSchema>;
