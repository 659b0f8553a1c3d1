import { BoardfleetError } from '../../protocol/errors.ts';
import type { VersionRelation } from './debian-version.ts';

/** One paragraph of a Debian control file: field name → value (continuation lines joined by "\n"). */
export type ControlStanza = Map<string, string>;

/**
 * Parses one paragraph. Field names are case-insensitive in Debian, but the archive writes them
 * in one canonical case, which is what lookups use.
 */
export function parseStanza(block: string): ControlStanza {
  const fields: ControlStanza = new Map();
  let current: string | undefined;
  for (const line of block.split('\n')) {
    if (line === '') continue;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (current !== undefined) fields.set(current, `${fields.get(current)}\n${line.slice(1)}`);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    current = line.slice(0, colon);
    fields.set(current, line.slice(colon + 1).trim());
  }
  return fields;
}

/**
 * Reads a Packages index as chunks arrive, keeping only `wanted` fields, so a 50 MB index is
 * never held whole. Chunks are latin1 strings (one character per byte: cheap to decode, and
 * chunk boundaries cannot split a character); UTF-8 is restored for the fields kept.
 * Description is cut to its synopsis (first line).
 */
export class PackagesParser {
  private pending = '';
  private current: ControlStanza = new Map();
  private lastField: string | undefined;

  constructor(
    private readonly wanted: ReadonlySet<string>,
    private readonly onStanza: (stanza: ControlStanza) => void,
  ) {}

  push(latin1: string): void {
    const data = this.pending + latin1;
    let start = 0;
    for (let end = data.indexOf('\n', start); end >= 0; end = data.indexOf('\n', start)) {
      this.line(data, start, end);
      start = end + 1;
    }
    this.pending = data.slice(start);
  }

  end(): void {
    if (this.pending !== '') this.line(this.pending, 0, this.pending.length);
    this.pending = '';
    this.flush();
  }

  private line(data: string, start: number, end: number): void {
    if (start === end) {
      this.flush();
      return;
    }
    const first = data.charCodeAt(start);
    if (first === 32 || first === 9) {
      // A continuation line: part of the field above, unless that one is unwanted or Description.
      if (this.lastField !== undefined && this.lastField !== 'Description') {
        this.current.set(
          this.lastField,
          `${this.current.get(this.lastField)}\n${utf8(data.slice(start + 1, end))}`,
        );
      }
      return;
    }
    const colon = data.indexOf(':', start);
    const name = colon > start && colon < end ? data.slice(start, colon) : undefined;
    this.lastField = name !== undefined && this.wanted.has(name) ? name : undefined;
    if (this.lastField !== undefined)
      this.current.set(this.lastField, utf8(data.slice(colon + 1, end).trim()));
  }

  private flush(): void {
    if (this.current.size > 0) this.onStanza(this.current);
    this.current = new Map();
    this.lastField = undefined;
  }
}

/** Undoes a latin1 decoding, only when there is something to undo. */
function utf8(latin1: string): string {
  return /[\u0080-\u00ff]/.test(latin1) ? Buffer.from(latin1, 'latin1').toString('utf8') : latin1;
}

/** One entry of a Release file's checksum list. */
export interface ReleaseEntry {
  sha256: string;
  size: number;
}

/** The fields of a (verified) Release file that the archive client uses. */
export interface ReleaseFile {
  suite: string;
  codename: string;
  date: Date | undefined;
  validUntil: Date | undefined;
  acquireByHash: boolean;
  architectures: string[];
  components: string[];
  /** Path relative to `dists/<suite>/` → sha256 and size. */
  sha256: Map<string, ReleaseEntry>;
}

/** Parses the signed text of an InRelease (or a Release file). */
export function parseRelease(text: string, source: string): ReleaseFile {
  const fields = parseStanza(text.replace(/\r\n/g, '\n').trim());
  const sha256 = new Map<string, ReleaseEntry>();
  for (const line of (fields.get('SHA256') ?? '').split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 3) continue;
    const [hash, size, path] = parts as [string, string, string];
    if (!/^[0-9a-f]{64}$/.test(hash) || !/^\d+$/.test(size)) continue;
    sha256.set(path, { sha256: hash, size: Number(size) });
  }
  if (sha256.size === 0) {
    throw new BoardfleetError('archive-release-invalid', `${source} has no SHA256 list of index files`);
  }
  const words = (name: string) => (fields.get(name) ?? '').split(/\s+/).filter(Boolean);
  return {
    suite: fields.get('Suite') ?? '',
    codename: fields.get('Codename') ?? '',
    date: parseDate(fields.get('Date')),
    validUntil: parseDate(fields.get('Valid-Until')),
    acquireByHash: (fields.get('Acquire-By-Hash') ?? '').toLowerCase() === 'yes',
    architectures: words('Architectures'),
    components: words('Components'),
    sha256,
  };
}

function parseDate(value: string | undefined): Date | undefined {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** One alternative of a dependency: `libc6 (>= 2.36)`, `python3:any`. */
export interface Relation {
  name: string;
  /** The multiarch qualifier after `:` (`any`, `native` or an architecture), if any. */
  qualifier?: string;
  relation?: VersionRelation;
  version?: string;
}

const RELATION =
  /^([a-z0-9][a-z0-9+.-]*)(?::([a-z0-9-]+))?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^)\s]+)\s*\))?$/;

/**
 * Parses a Depends-style field into groups of alternatives: `a | b, c` → `[[a, b], [c]]`.
 * `context` names the package and field in the error.
 */
export function parseRelations(field: string, context: string): Relation[][] {
  if (field.trim() === '') return [];
  return field.split(',').map((group) =>
    group.split('|').map((alternative) => {
      const match = RELATION.exec(alternative.trim());
      if (!match) {
        throw new BoardfleetError(
          'archive-index-invalid',
          `cannot read the dependency "${alternative.trim()}" in ${context}`,
        );
      }
      const [, name, qualifier, relation, version] = match;
      const parsed: Relation = { name: name as string };
      if (qualifier) parsed.qualifier = qualifier;
      if (relation && version) {
        // dpkg still accepts the obsolete `<` and `>`, meaning `<=` and `>=`.
        parsed.relation = relation === '<' ? '<=' : relation === '>' ? '>=' : (relation as VersionRelation);
        parsed.version = version;
      }
      return parsed;
    }),
  );
}
