/**
 * Property-based test of the server's one door for request bodies and queries: whatever JSON a
 * client sends to any operation, `parseBody` returns the parsed value or throws a 400
 * BoardfleetError naming what was wrong, never another exception (which would be a 500).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ApiOperation } from '../../protocol/api/operation.ts';
import { operations } from '../../protocol/api/operations.ts';
import { BoardfleetError, ERROR_STATUS } from '../../protocol/errors.ts';
import { anyJson, mutatedLike, shapedLike } from '../../test/support/schema-arbitrary.ts';
import { parseBody } from './zod-body.ts';

const inputs = Object.entries<ApiOperation>(operations).flatMap(([id, operation]) => [
  ...(operation.body?.type === 'json' ? [{ name: `${id} body`, schema: operation.body.schema }] : []),
  ...(operation.query ? [{ name: `${id} query`, schema: operation.query }] : []),
]);

describe.each(inputs)('parseBody for $name', ({ schema }) => {
  it('returns the value or throws a 400 BoardfleetError, for any JSON, shaped or not', () => {
    fc.assert(
      fc.property(
        fc.oneof(anyJson, shapedLike(schema), mutatedLike(schema), fc.constant(undefined)),
        (body) => {
          try {
            parseBody(schema, body);
          } catch (error) {
            expect(error).toBeInstanceOf(BoardfleetError);
            const { code, message } = error as BoardfleetError;
            expect(ERROR_STATUS[code]).toBe(400);
            expect(message).toMatch(/^invalid request body: /);
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
