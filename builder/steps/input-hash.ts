import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256 } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

const BUILDER_DIRECTORY = fileURLToPath(new URL('../', import.meta.url));
const PACKAGE_JSON = fileURLToPath(new URL('../../package.json', import.meta.url));

/** The hash of a JSON value: what a build step's inputs are, as a cache key. */
export function hashOf(value: unknown): string {
  return sha256(JSON.stringify(value));
}

let builderHashCache: string | undefined;

/**
 * The builder's own code and scripts (every source under builder/) are inputs too: a changed
 * init script must not reuse a cached root.
 */
export function builderSourcesHash(): string {
  if (builderHashCache) return builderHashCache;
  const files = (readdirSync(BUILDER_DIRECTORY, { recursive: true }) as string[])
    .filter((file) => !file.endsWith('.test.ts') && /\.(ts|sh|c|script)$/.test(file))
    .sort();
  builderHashCache = hashOf(files.map((file) => [file, sha256(readFileSync(join(BUILDER_DIRECTORY, file)))]));
  return builderHashCache;
}

/** Boardfleet's version, as the SBOM names the tool that wrote it. */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string }).version;
}

/** SOURCE_DATE_EPOCH from the environment, when set: every timestamp of a build. */
export function epochFromEnvironment(): number | undefined {
  const raw = process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new BoardfleetError(
      'invalid-config',
      `SOURCE_DATE_EPOCH=${raw} is not a positive whole number of seconds`,
    );
  }
  return value;
}
