/**
 * The Update Framework's metadata, as the specification writes it
 * (https://theupdateframework.github.io/specification/latest/), so that a stock TUF client
 * (tuf-js, python-tuf, go-tuf) reads the fleet's repository. Only what Boardfleet publishes:
 * ed25519 keys, the four top-level roles, no delegations.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

/** The specification version our documents follow. */
export const TUF_SPEC_VERSION = '1.0.31';

/** Roles whose keys the server holds and signs with, unattended. */
export const ONLINE_ROLES = ['targets', 'snapshot', 'timestamp'] as const;
export const TOP_LEVEL_ROLES = ['root', ...ONLINE_ROLES] as const;
export type OnlineRole = (typeof ONLINE_ROLES)[number];
export type TopLevelRole = (typeof TOP_LEVEL_ROLES)[number];

const hex = (what: string) => z.string().regex(/^([0-9a-f]{2})+$/, `${what} in lower-case hex`);
const keyId = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'a key id: the sha256 (64 hex digits) of the canonical JSON of its key');

/** ISO 8601 in UTC to the second (`2027-01-31T12:00:00Z`): the one form the specification allows. */
export const tufTimeSchema = z
  .string()
  .regex(
    /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ$/,
    'a UTC time to the second, as 2027-01-31T12:00:00Z',
  )
  .refine((text) => !Number.isNaN(Date.parse(text)), 'not a real date');

const specVersion = z
  .string()
  .regex(/^1\.\d+(\.\d+)?$/, `a TUF specification version 1.x (we write ${TUF_SPEC_VERSION})`);

export const tufKeySchema = z.strictObject({
  keytype: z.literal('ed25519'),
  scheme: z.literal('ed25519'),
  keyval: z.strictObject({
    public: z.string().regex(/^[0-9a-f]{64}$/, 'the raw 32-byte public key in lower-case hex'),
  }),
});

export const tufSignatureSchema = z.strictObject({ keyid: keyId, sig: hex('the signature') });

export const tufRoleSchema = z.strictObject({
  keyids: z.array(keyId).min(1),
  threshold: z.number().int().min(1),
});

export const tufRootSignedSchema = z.strictObject({
  _type: z.literal('root'),
  spec_version: specVersion,
  version: z
    .number()
    .int()
    .min(1)
    .max(2 ** 31 - 1),
  expires: tufTimeSchema,
  consistent_snapshot: z.boolean(),
  keys: z.record(keyId, tufKeySchema),
  roles: z.strictObject({
    root: tufRoleSchema,
    targets: tufRoleSchema,
    snapshot: tufRoleSchema,
    timestamp: tufRoleSchema,
  }),
});

export const tufMetaFileSchema = z.object({
  version: z.number().int().min(1),
  length: z.number().int().min(0).optional(),
  hashes: z.record(z.string(), z.string()).optional(),
});

export const tufTargetFileSchema = z.object({
  length: z.number().int().min(0),
  hashes: z.record(z.string(), z.string()),
  custom: z.record(z.string(), z.unknown()).optional(),
});

const commonFields = { spec_version: specVersion, version: z.number().int().min(1), expires: tufTimeSchema };

export const tufTargetsSignedSchema = z.object({
  _type: z.literal('targets'),
  ...commonFields,
  targets: z.record(z.string(), tufTargetFileSchema),
});

export const tufSnapshotSignedSchema = z.object({
  _type: z.literal('snapshot'),
  ...commonFields,
  meta: z.record(z.string(), tufMetaFileSchema),
});

export const tufTimestampSignedSchema = z.object({
  _type: z.literal('timestamp'),
  ...commonFields,
  meta: z.object({ 'snapshot.json': tufMetaFileSchema }),
});

/** A root as an operator hands it in: checked strictly, since the server signs nothing of it. */
export const tufRootSchema = z.strictObject({
  signed: tufRootSignedSchema,
  signatures: z.array(tufSignatureSchema),
});

/** Any of the four documents the repository serves. */
export const tufMetadataSchema = z.object({
  signed: z.discriminatedUnion('_type', [
    tufRootSignedSchema,
    tufTargetsSignedSchema,
    tufSnapshotSignedSchema,
    tufTimestampSignedSchema,
  ]),
  signatures: z.array(tufSignatureSchema),
});

export type TufKey = z.infer<typeof tufKeySchema>;
export type TufSignature = z.infer<typeof tufSignatureSchema>;
export type TufRole = z.infer<typeof tufRoleSchema>;
export type TufRootSigned = z.infer<typeof tufRootSignedSchema>;
export type TufMetaFile = z.infer<typeof tufMetaFileSchema>;
export type TufTargetFile = z.infer<typeof tufTargetFileSchema>;
export type TufTargetsSigned = z.infer<typeof tufTargetsSignedSchema>;
export type TufSnapshotSigned = z.infer<typeof tufSnapshotSignedSchema>;
export type TufTimestampSigned = z.infer<typeof tufTimestampSignedSchema>;
export type TufSigned = TufRootSigned | TufTargetsSigned | TufSnapshotSigned | TufTimestampSigned;
export type TufRoot = z.infer<typeof tufRootSchema>;
export type TufMetadata = z.infer<typeof tufMetadataSchema>;

/** A signed document: what is signed, and the signatures over its canonical JSON. */
export interface TufEnvelope<Signed extends TufSigned = TufSigned> {
  signed: Signed;
  signatures: TufSignature[];
}

/** A time as TUF writes it: UTC, to the second (a fraction would be refused by some clients). */
export function tufTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** Rounds down to the second, as {@link tufTime} writes it, so a stored expiry matches the document. */
export const toWholeSecond = (ms: number) => Math.floor(ms / 1000) * 1000;

/** How a document names another by its version, length and sha256. */
export function metaFileOf(version: number, bytes: string | Buffer): Required<TufMetaFile> {
  return {
    version,
    length: Buffer.byteLength(bytes),
    hashes: { sha256: createHash('sha256').update(bytes).digest('hex') },
  };
}

export function targetsSigned(
  version: number,
  expiresAt: number,
  targets: Record<string, TufTargetFile>,
): TufTargetsSigned {
  return { _type: 'targets', spec_version: TUF_SPEC_VERSION, version, expires: tufTime(expiresAt), targets };
}

export function snapshotSigned(
  version: number,
  expiresAt: number,
  targetsMeta: TufMetaFile,
): TufSnapshotSigned {
  return {
    _type: 'snapshot',
    spec_version: TUF_SPEC_VERSION,
    version,
    expires: tufTime(expiresAt),
    meta: { 'targets.json': targetsMeta },
  };
}

export function timestampSigned(
  version: number,
  expiresAt: number,
  snapshotMeta: TufMetaFile,
): TufTimestampSigned {
  return {
    _type: 'timestamp',
    spec_version: TUF_SPEC_VERSION,
    version,
    expires: tufTime(expiresAt),
    meta: { 'snapshot.json': snapshotMeta },
  };
}

/** A metadata file the repository serves: `root.json`, `3.root.json`, `timestamp.json`, `7.targets.json`… */
export interface MetadataFileName {
  role: TopLevelRole;
  /** null for the latest (the only form timestamp.json has). */
  version: number | null;
}

export const METADATA_FILE_NAMES =
  'root.json, N.root.json, timestamp.json, snapshot.json, N.snapshot.json, targets.json, N.targets.json';

const METADATA_FILE = /^(?:([1-9]\d{0,9})\.)?(root|targets|snapshot|timestamp)\.json$/;

/** The role and version a file name asks for; null for a name the repository has no file for. */
export function parseMetadataFileName(name: string): MetadataFileName | null {
  const match = METADATA_FILE.exec(name);
  if (!match) return null;
  const role = match[2] as TopLevelRole;
  const version = match[1] === undefined ? null : Number(match[1]);
  // Clients always fetch the newest timestamp: the specification gives it no versioned name.
  if (role === 'timestamp' && version !== null) return null;
  return { role, version };
}
