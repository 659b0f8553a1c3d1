/**
 * fast-check arbitraries for fuzzing the contract's zod schemas: values shaped like what a schema
 * accepts (from its JSON Schema, the same one the OpenAPI document shows), mutations of such
 * values, and JSON of any shape. Refinements are not in the JSON Schema, so a shaped value can
 * still be refused: the properties hold either way.
 */
import fc from 'fast-check';
import { z } from 'zod';

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: boolean | JsonSchema;
  prefixItems?: JsonSchema[];
  minItems?: number;
  maxItems?: number;
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  format?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  default?: unknown;
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
};

/** Longest string generated, whatever the schema allows: long strings find nothing new, slowly. */
const MAX_STRING = 200;
/** Keys a hostile client sends to reach a prototype. */
const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', ''];

/** Any JSON value, including objects whose keys are prototype names. */
export const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.dictionary(fc.constantFrom(...HOSTILE_KEYS), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
);

/** Values shaped like what `schema` accepts (its input side). */
export function shapedLike(schema: z.ZodType): fc.Arbitrary<unknown> {
  const root = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  return fromJsonSchema(root, root.$defs ?? {});
}

/** A shaped value with one part replaced by anything, removed, or joined by an unknown key. */
export function mutatedLike(schema: z.ZodType): fc.Arbitrary<unknown> {
  return fc
    .tuple(shapedLike(schema), fc.nat(), anyJson, fc.constantFrom('replace', 'delete', 'add'))
    .map(([value, pick, replacement, how]) => mutate(value, pick, replacement, how));
}

function mutate(value: unknown, pick: number, replacement: unknown, how: string): unknown {
  const paths = pathsOf(value, []);
  const path = paths[pick % paths.length] as string[];
  if (path.length === 0) return how === 'replace' ? replacement : value;
  const copy = structuredClone(value) as Record<string, unknown>;
  let parent = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string, unknown>;
  const last = path[path.length - 1] as string;
  if (how === 'replace') parent[last] = replacement;
  else if (how === 'delete') delete parent[last];
  else if (typeof parent[last] === 'object' && parent[last] !== null)
    (parent[last] as Record<string, unknown>)['unexpected'] = replacement;
  else parent[last] = replacement;
  return copy;
}

function pathsOf(value: unknown, path: string[]): string[][] {
  if (typeof value !== 'object' || value === null) return [path];
  return [
    path,
    ...Object.keys(value).flatMap((key) => pathsOf((value as Record<string, unknown>)[key], [...path, key])),
  ];
}

function fromJsonSchema(
  schema: JsonSchema | boolean,
  defs: Record<string, JsonSchema>,
): fc.Arbitrary<unknown> {
  if (typeof schema === 'boolean') return schema ? fc.jsonValue({ maxDepth: 2 }) : fc.constant(undefined);
  if (schema.$ref) {
    const name = schema.$ref.replace('#/$defs/', '');
    return fc.constant(null).chain(() => fromJsonSchema(defs[name] ?? {}, defs));
  }
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum) return fc.constantFrom(...schema.enum);
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives) return fc.oneof(...alternatives.map((alternative) => fromJsonSchema(alternative, defs)));
  if (schema.allOf?.[0]) return fromJsonSchema(schema.allOf[0], defs);
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  if (types.length > 1) return fc.oneof(...types.map((type) => fromJsonSchema({ ...schema, type }, defs)));
  switch (types[0]) {
    case 'object':
      return objectOf(schema, defs);
    case 'array':
      return arrayOf(schema, defs);
    case 'string':
      return stringOf(schema);
    case 'integer':
      return fc
        .bigInt({
          min: BigInt(
            Math.ceil(schema.minimum ?? (schema.exclusiveMinimum ?? Number.MIN_SAFE_INTEGER - 1) + 1),
          ),
          max: BigInt(
            Math.floor(schema.maximum ?? (schema.exclusiveMaximum ?? Number.MAX_SAFE_INTEGER + 1) - 1),
          ),
        })
        .map(Number);
    case 'number':
      return fc.double({
        min: schema.minimum ?? schema.exclusiveMinimum ?? -1e12,
        max: schema.maximum ?? schema.exclusiveMaximum ?? 1e12,
        minExcluded: schema.exclusiveMinimum !== undefined,
        maxExcluded: schema.exclusiveMaximum !== undefined,
        noNaN: true,
        noDefaultInfinity: true,
      });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

function objectOf(schema: JsonSchema, defs: Record<string, JsonSchema>): fc.Arbitrary<unknown> {
  const properties = schema.properties ?? {};
  const required = Object.keys(properties).filter((key) => schema.required?.includes(key));
  const record = fc.record(
    Object.fromEntries(Object.entries(properties).map(([key, child]) => [key, fromJsonSchema(child, defs)])),
    { requiredKeys: required },
  );
  const extra = schema.additionalProperties;
  if (Object.keys(properties).length > 0 || extra === false) return record;
  return fc.dictionary(
    fc.string({ minLength: 1, maxLength: 12 }),
    fromJsonSchema(typeof extra === 'object' ? extra : true, defs),
    { maxKeys: 4 },
  );
}

function arrayOf(schema: JsonSchema, defs: Record<string, JsonSchema>): fc.Arbitrary<unknown> {
  if (schema.prefixItems) return fc.tuple(...schema.prefixItems.map((item) => fromJsonSchema(item, defs)));
  return fc.array(fromJsonSchema(schema.items ?? true, defs), {
    minLength: schema.minItems ?? 0,
    maxLength: Math.min(schema.maxItems ?? 5, 5),
  });
}

function stringOf(schema: JsonSchema): fc.Arbitrary<string> {
  const minLength = schema.minLength ?? 0;
  const maxLength = Math.max(minLength, Math.min(schema.maxLength ?? MAX_STRING, MAX_STRING));
  const fits = (text: string) => text.length >= minLength && text.length <= (schema.maxLength ?? Infinity);
  if (schema.pattern) return fc.stringMatching(new RegExp(schema.pattern)).filter(fits);
  if (schema.format === 'uri') return fc.webUrl().filter(fits);
  return fc.oneof(
    fc.string({ minLength, maxLength }),
    fc.string({ minLength, maxLength, unit: 'grapheme' }),
    fc.string({ minLength, maxLength, unit: 'binary' }),
    // Strings that refinements and coercions look for: versions, numbers, comma lists.
    fc
      .tuple(fc.nat(99), fc.nat(99), fc.nat(99))
      .map((parts) => parts.join('.'))
      .filter(fits),
    fc.integer({ min: -5, max: 5000 }).map(String).filter(fits),
    fc
      .array(fc.constantFrom('uno', 'rpi-4b', 'nano', ' uno ', ''), { minLength: 1, maxLength: 5 })
      .map((ids) => ids.join(','))
      .filter(fits),
  );
}
