/**
 * Property-based tests of every REST schema in protocol/api (issue 13, "Tests that must exist"):
 * any JSON a client sends is answered by a zod result, never another exception, and what a schema
 * accepts keeps the invariants its documentation promises. A failure prints fast-check's seed.
 */
import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import semver from 'semver';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { anyJson, mutatedLike, shapedLike } from '../../test/support/schema-arbitrary.ts';
import { artifactUploadQuery } from './artifacts.ts';
import { listDevicesQuery, timeRangeQuery } from './devices.ts';
import type { ApiOperation } from './operation.ts';
import { operations } from './operations.ts';
import { createReleaseBody } from './releases.ts';
import { rolloutTargetSchema } from './rollouts.ts';
import { createRollbackOrderBody } from './tuf.ts';

const RUNS = { numRuns: 150 };

/** Every zod schema protocol/api exports (by module and name), and every one the operations table uses. */
async function apiSchemas(): Promise<Map<z.ZodType, string>> {
  const found = new Map<z.ZodType, string>();
  const add = (schema: unknown, name: string) => {
    if (schema instanceof z.ZodType && !found.has(schema)) found.set(schema, name);
  };
  const modules = readdirSync(new URL('.', import.meta.url)).filter(
    (file) => file.endsWith('.ts') && !file.endsWith('.test.ts'),
  );
  for (const file of modules) {
    const exports = (await import(`./${file}`)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(exports)) {
      add(value, `${file}: ${name}`);
      // Event streams export a record of schemas, one per event name.
      if (value && typeof value === 'object' && !(value instanceof z.ZodType))
        for (const [event, schema] of Object.entries(value)) add(schema, `${file}: ${name}.${event}`);
    }
  }
  for (const [id, operation] of Object.entries<ApiOperation>(operations)) {
    add(operation.params, `${id} params`);
    add(operation.query, `${id} query`);
    for (const [part, payload] of [
      ['body', operation.body],
      ['response', operation.response],
    ] as const) {
      if (payload?.type === 'json') add(payload.schema, `${id} ${part}`);
      if (payload?.type === 'events')
        for (const [event, schema] of Object.entries(payload.events)) add(schema, `${id} event ${event}`);
    }
  }
  return found;
}

const schemas = [...(await apiSchemas())].map(([schema, name]) => ({ name, schema }));

/** parse either returns or throws a ZodError; safeParse never throws. */
function parsesWithoutThrowing(schema: z.ZodType, value: unknown): z.ZodSafeParseResult<unknown> {
  const result = schema.safeParse(value);
  try {
    schema.parse(value);
  } catch (error) {
    expect(error).toBeInstanceOf(z.ZodError);
  }
  return result;
}

type Invariant = (accepted: Record<string, unknown>) => void;

const isCount = (value: unknown, min: number, max = Number.MAX_SAFE_INTEGER) =>
  Number.isInteger(value) && (value as number) >= min && (value as number) <= max;

/** A paginated query's promise (shared.ts): `limit` 1–1000 and `offset` from 0, integers. */
const paged: Invariant = ({ limit, offset }) => {
  if (limit !== undefined) expect(isCount(limit, 1, 1000), `limit ${String(limit)}`).toBe(true);
  if (offset !== undefined) expect(isCount(offset, 0), `offset ${String(offset)}`).toBe(true);
};

/**
 * What the documentation of the request schemas promises of an accepted value: the refinements,
 * coercions and transforms a JSON Schema cannot say, checked without zod.
 */
const INVARIANTS = new Map<z.ZodType, Invariant>([
  [
    artifactUploadQuery,
    ({ version, boards, sha256, size }) => {
      expect(semver.valid(version as string)).toBe(version);
      // Comma-separated ids become a sorted list of distinct, non-empty, trimmed ids.
      const list = boards as string[];
      expect(list.length).toBeGreaterThan(0);
      expect(list).toEqual([...new Set(list)].sort());
      for (const board of list) {
        expect(board).toBe(board.trim());
        expect(board).not.toBe('');
      }
      expect(sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(isCount(size, 0)).toBe(true);
    },
  ],
  [createReleaseBody, ({ artifacts }) => expect(Object.keys(artifacts as object).length).toBeGreaterThan(0)],
  [
    rolloutTargetSchema,
    (target) => {
      const named = [target.deviceIds, target.tags, target.boards].filter(Boolean) as unknown[][];
      expect(named.length).toBeGreaterThan(0);
      for (const list of named) expect(list.length).toBeGreaterThan(0);
    },
  ],
  [
    createRollbackOrderBody,
    ({ device, release, from, to }) => {
      // One device or one release, never both, never neither.
      expect([device, release].filter((scope) => scope !== undefined)).toHaveLength(1);
      for (const version of [from, to]) expect(semver.valid(version as string)).toBe(version);
    },
  ],
  [
    listDevicesQuery,
    (query) => {
      paged(query);
      expect([true, false, undefined]).toContain(query.online);
      if (query.q !== undefined) expect(query.q).toBe((query.q as string).trim());
    },
  ],
  [
    timeRangeQuery,
    ({ from, to, limit }) => {
      for (const time of [from, to]) if (time !== undefined) expect(isCount(time, 0)).toBe(true);
      expect(isCount(limit, 1, 10_000)).toBe(true);
    },
  ],
]);

/** Schemas whose output is another type than their input (a query's strings made a list, a boolean). */
const TRANSFORMING = new Set<z.ZodType>([artifactUploadQuery, listDevicesQuery]);

describe('REST schemas', () => {
  it('are all found: every protocol/api module and operation contributes', () => {
    expect(schemas.length).toBeGreaterThan(60);
    expect(schemas.some(({ name }) => name.startsWith('operations.ts'))).toBe(false);
  });

  describe.each(schemas)('$name', ({ name, schema }) => {
    it('answers any JSON with a zod result, never another exception', () => {
      fc.assert(
        fc.property(fc.oneof(anyJson, mutatedLike(schema)), (value) => {
          parsesWithoutThrowing(schema, value);
        }),
        RUNS,
      );
    });

    it('keeps its documented invariants in what it accepts, and accepts its own output again', () => {
      let accepted = 0;
      fc.assert(
        fc.property(shapedLike(schema), (value) => {
          const result = parsesWithoutThrowing(schema, value);
          if (!result.success) return;
          accepted += 1;
          const invariant = INVARIANTS.get(schema) ?? (/query$/i.test(name) ? paged : undefined);
          invariant?.(result.data as Record<string, unknown>);
          // What the server answers is parsed again by its clients: it must pass the same schema.
          const again = schema.safeParse(JSON.parse(JSON.stringify(result.data) ?? 'null'));
          if (!TRANSFORMING.has(schema))
            expect(again.success, JSON.stringify(again.error?.issues)).toBe(true);
        }),
        // The schemas with documented invariants get more runs: fewer of their shaped values pass.
        INVARIANTS.has(schema) ? { numRuns: 600 } : RUNS,
      );
      // Else the invariants above were never checked: the generator missed what the schema wants.
      expect(accepted, 'shaped values accepted').toBeGreaterThan(0);
    });
  });
});
