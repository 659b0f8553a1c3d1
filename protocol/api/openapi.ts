/**
 * The OpenAPI 3.1 document, generated from the operations table and its zod schemas. Named
 * schemas become components; a schema whose request form differs from its answer form (fields
 * with defaults are optional when sent) gets a second component, `<Name>Input`.
 */
import { z } from 'zod';
import { type Access, type ApiOperation, type Payload, pathParameters, requiredRole } from './operation.ts';
import { apiComponents, apiErrorSchema } from './shared.ts';

type JsonSchema = Record<string, unknown>;
type Io = 'input' | 'output';

export interface OpenApiInfo {
  title: string;
  version: string;
  description: string;
}

const SECURITY_SCHEMES = {
  operatorToken: {
    type: 'http',
    scheme: 'bearer',
    description: 'An operator API token (viewer, operator or admin)',
  },
  provisioningToken: {
    type: 'http',
    scheme: 'bearer',
    description: 'A fleet provisioning token',
  },
  deviceCredentials: { type: 'http', scheme: 'basic', description: "A device's id and secret" },
};

const SECURITY: Record<Access, Array<Record<string, string[]>>> = {
  viewer: [{ operatorToken: [] }],
  operator: [{ operatorToken: [] }],
  admin: [{ operatorToken: [] }],
  'operator-or-device': [{ operatorToken: [] }, { deviceCredentials: [] }],
  'provisioning-token': [{ provisioningToken: [] }],
  device: [{ deviceCredentials: [] }],
  public: [],
};

const componentRef = (name: string) => `#/components/schemas/${name}`;

/** The document for `operations`, keyed by operation id. */
export function openApiDocument(operations: Record<string, ApiOperation>, info: OpenApiInfo): JsonSchema {
  const components = new ComponentSchemas();
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const [operationId, operation] of Object.entries(operations)) {
    paths[operation.path] ??= {};
    (paths[operation.path] as Record<string, JsonSchema>)[operation.method] = describeOperation(
      operationId,
      operation,
      components,
    );
  }
  return {
    openapi: '3.1.0',
    info,
    tags: [...new Set(Object.values(operations).map((operation) => operation.tag))].map((name) => ({ name })),
    paths,
    components: { schemas: components.used(), securitySchemes: SECURITY_SCHEMES },
  };
}

function describeOperation(operationId: string, operation: ApiOperation, components: ComponentSchemas) {
  const role = requiredRole(operation.access);
  return {
    operationId,
    summary: operation.summary,
    ...(role ? { description: `Needs the ${role} role.`, 'x-required-role': role } : {}),
    tags: [operation.tag],
    security: SECURITY[operation.access],
    parameters: parameters(operation),
    ...(operation.body
      ? {
          requestBody: {
            // A write that takes no fields may be sent without a body.
            required: !(operation.body.type === 'json' && operation.body.schema.safeParse({}).success),
            content: content(operation.body, 'input', components),
          },
        }
      : {}),
    responses: {
      [operation.status]: {
        description: operation.summary,
        ...(operation.responseHeaders
          ? {
              headers: Object.fromEntries(
                Object.entries(operation.responseHeaders).map(([name, description]) => [
                  name,
                  { description, schema: { type: 'string' } },
                ]),
              ),
            }
          : {}),
        content: content(operation.response, 'output', components),
      },
      default: {
        description: 'An error: its status, a stable code and a message',
        content: { 'application/json': { schema: { $ref: components.ref(apiErrorSchema, 'output') } } },
      },
    },
  };
}

function parameters(operation: ApiOperation): JsonSchema[] {
  const pathSchemas = operation.params
    ? objectProperties(operation.params)
    : { properties: {}, required: [] };
  const query = operation.query ? objectProperties(operation.query) : { properties: {}, required: [] };
  return [
    ...pathParameters(operation.path).map((name) => ({
      name,
      in: 'path',
      required: true,
      schema: pathSchemas.properties[name] ?? { type: 'string' },
    })),
    ...Object.entries(query.properties).map(([name, schema]) => {
      const { description, ...rest } = schema;
      return {
        name,
        in: 'query',
        required: query.required.includes(name),
        ...(description ? { description } : {}),
        schema: rest,
      };
    }),
    ...Object.entries(operation.headers ?? {}).map(([name, description]) => ({
      name,
      in: 'header',
      required: false,
      description,
      schema: { type: 'string' },
    })),
  ];
}

/** A query or path object's properties as a client sends them (strings coerced, defaults optional). */
function objectProperties(schema: z.ZodObject) {
  const converted = z.toJSONSchema(schema, { io: 'input' }) as {
    properties?: Record<string, JsonSchema>;
    required?: string[];
  };
  return { properties: converted.properties ?? {}, required: converted.required ?? [] };
}

function content(payload: Payload, io: Io, components: ComponentSchemas) {
  switch (payload.type) {
    case 'json':
      return { 'application/json': { schema: { $ref: components.ref(payload.schema, io) } } };
    case 'text':
      return { 'text/plain': { schema: { type: 'string', description: payload.description } } };
    case 'binary':
      return {
        'application/octet-stream': {
          schema: { type: 'string', format: 'binary', description: payload.description },
        },
      };
    case 'events':
      // One schema per event as it is parsed from the stream: its name, its id, its JSON data.
      return {
        'text/event-stream': {
          schema: {
            description: payload.description,
            oneOf: Object.entries(payload.events).map(([event, data]) => ({
              type: 'object',
              properties: {
                event: { const: event },
                id: { type: 'string' },
                data: { $ref: components.ref(data, 'output') },
              },
              required: ['event', 'data'],
            })),
          },
        },
      };
  }
}

/** The named schemas in both forms, and which of them the document refers to. */
class ComponentSchemas {
  private readonly inputName: (id: string) => string;
  /** Each component by its name in the document: `Device`, `CreateRolloutInput`… */
  private readonly byName: Record<string, JsonSchema>;
  private readonly referenced = new Set<string>();

  constructor() {
    const output = convertAll('output', (id) => id);
    const differs = inputFormsThatDiffer(
      output,
      convertAll('input', (id) => id),
    );
    this.inputName = (id) => (differs.has(id) ? `${id}Input` : id);
    const input = convertAll('input', this.inputName);
    this.byName = {
      ...output,
      ...Object.fromEntries(Object.entries(input).map(([id, schema]) => [this.inputName(id), schema])),
    };
  }

  /** A reference to a named schema in the form `io`; throws for a schema without a name. */
  ref(schema: z.ZodType, io: Io): string {
    const id = apiComponents.get(schema)?.id;
    if (!id) throw new Error('a schema in the operations table has no component name: wrap it in named()');
    const name = io === 'input' ? this.inputName(id) : id;
    this.refer(name);
    return componentRef(name);
  }

  /** Every component the document refers to, directly or through another, by name. */
  used(): Record<string, JsonSchema> {
    return Object.fromEntries(
      [...this.referenced].sort().map((name) => [name, this.byName[name] as JsonSchema]),
    );
  }

  private refer(name: string): void {
    if (this.referenced.has(name)) return;
    this.referenced.add(name);
    for (const ref of refsIn(this.byName[name])) this.refer(ref);
  }
}

/**
 * The named schemas whose input form needs a component of its own: those whose input form differs
 * (a default makes a field optional), and those that refer to one of them.
 */
function inputFormsThatDiffer(output: Record<string, JsonSchema>, input: Record<string, JsonSchema>) {
  const differs = new Set(
    Object.keys(output).filter((id) => JSON.stringify(input[id]) !== JSON.stringify(output[id])),
  );
  for (let grew = true; grew;) {
    grew = false;
    for (const [id, schema] of Object.entries(input)) {
      if (!differs.has(id) && [...refsIn(schema)].some((ref) => differs.has(ref))) {
        differs.add(id);
        grew = true;
      }
    }
  }
  return differs;
}

/** Every named schema in one form, referring to the others by `name(id)`, without per-schema `$schema`/`$id`. */
function convertAll(io: Io, name: (id: string) => string): Record<string, JsonSchema> {
  const { schemas } = z.toJSONSchema(apiComponents, {
    io,
    uri: (id) => componentRef(name(id)),
  }) as { schemas: Record<string, JsonSchema> };
  return Object.fromEntries(
    Object.entries(schemas).map(([id, { $schema: _schema, $id: _id, ...schema }]) => [id, schema]),
  );
}

/** The component names a schema refers to. */
function refsIn(schema: unknown, found = new Set<string>()): Set<string> {
  if (Array.isArray(schema)) for (const item of schema) refsIn(item, found);
  else if (schema && typeof schema === 'object') {
    for (const [key, value] of Object.entries(schema)) {
      if (key === '$ref' && typeof value === 'string') found.add(value.slice(componentRef('').length));
      else refsIn(value, found);
    }
  }
  return found;
}
