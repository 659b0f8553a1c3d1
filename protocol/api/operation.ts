/**
 * The shape of one row of the REST operations table: what the server routes, what the OpenAPI
 * document describes, and what a client may call.
 */
import type { z } from 'zod';
import { OPERATOR_ROLES, type OperatorRole } from './session.ts';

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

/**
 * Who may call: an operator token with at least this role, nobody in particular, or a credential
 * the route checks itself (an agent's provisioning token, a device's Basic credentials).
 */
export type Access = OperatorRole | 'public' | 'provisioning-token' | 'device' | 'operator-or-device';

/** The role an operation needs from an operator token; null when the route checks another credential, or none. */
export const requiredRole = (access: Access): OperatorRole | null =>
  (OPERATOR_ROLES as readonly string[]).includes(access) ? (access as OperatorRole) : null;

/** A request or response body: JSON with its schema, or bytes described in words. */
export type Payload =
  | { type: 'json'; schema: z.ZodType }
  | { type: 'text'; description: string }
  | { type: 'binary'; description: string }
  /** Server-sent events: each event's name and the schema of its JSON `data`. */
  | { type: 'events'; events: Record<string, z.ZodType>; description: string };

export interface ApiOperation {
  method: HttpMethod;
  /** OpenAPI style: `/api/v1/devices/{id}`. */
  path: string;
  summary: string;
  tag: string;
  access: Access;
  /** The status of a successful answer. */
  status: 200 | 201 | 202;
  /** Path parameters whose values are restricted (all others are plain strings). */
  params?: z.ZodObject;
  query?: z.ZodObject;
  /** Header a client may send, by name, with what it does. */
  headers?: Record<string, string>;
  body?: Payload;
  response: Payload;
  /** Headers a successful answer carries, by name, with what they say. */
  responseHeaders?: Record<string, string>;
}

export const json = <T extends z.ZodType>(schema: T) => ({ type: 'json', schema }) as const;
export const text = (description: string) => ({ type: 'text', description }) as const;
export const binary = (description: string) => ({ type: 'binary', description }) as const;
export const events = <T extends Record<string, z.ZodType>>(eventSchemas: T, description: string) =>
  ({ type: 'events', events: eventSchemas, description }) as const;

/**
 * What a handler of the operation returns: the JSON answer's type; for a text answer the text, or
 * nothing when it writes the answer itself (as it always does for bytes and event streams).
 */
export type ResponseOf<Op extends ApiOperation> = Op['response'] extends { type: 'json'; schema: infer S }
  ? S extends z.ZodType
    ? z.infer<S>
    : never
  : Op['response'] extends { type: 'text' }
    ? string | void
    : void;

/** `/api/v1/devices/{id}` → `/api/v1/devices/:id`, the form Express routes by. */
export const expressPath = (path: string) => path.replace(/\{(\w+)\}/g, ':$1');

/** The names of a path's parameters, in order. */
export const pathParameters = (path: string) =>
  [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1] as string);
