import { BoardfleetError } from '../../protocol/errors.ts';

/** A Debian version split the way dpkg splits it: `[epoch:]upstream[-revision]`. */
export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/** The relations a dependency may put on a version (`<` and `>` are dpkg's obsolete spellings of `<=` and `>=`). */
export type VersionRelation = '<<' | '<=' | '=' | '>=' | '>>';

const UPSTREAM_CHARACTERS = /^[A-Za-z0-9.+~-]+$/;
const REVISION_CHARACTERS = /^[A-Za-z0-9.+~]*$/;

/** Splits and checks a version string; throws `invalid-version` naming it when dpkg would refuse it. */
export function parseDebianVersion(version: string): DebianVersion {
  const text = version.trim();
  const invalid = (why: string) =>
    new BoardfleetError('invalid-version', `"${version}" is not a Debian version: ${why}`);
  if (text === '') throw invalid('it is empty');
  if (/\s/.test(text)) throw invalid('it contains white space');
  const colon = text.indexOf(':');
  let epoch = 0;
  if (colon >= 0) {
    const epochText = text.slice(0, colon);
    if (!/^\d+$/.test(epochText)) throw invalid(`the epoch "${epochText}" is not a number`);
    epoch = Number(epochText);
  }
  const rest = text.slice(colon + 1);
  const hyphen = rest.lastIndexOf('-');
  const upstream = hyphen >= 0 ? rest.slice(0, hyphen) : rest;
  const revision = hyphen >= 0 ? rest.slice(hyphen + 1) : '';
  if (upstream === '') throw invalid('the upstream version is empty');
  if (!UPSTREAM_CHARACTERS.test(upstream))
    throw invalid(`the upstream version "${upstream}" has a bad character`);
  if (hyphen >= 0 && revision === '') throw invalid('the revision after the last "-" is empty');
  if (!REVISION_CHARACTERS.test(revision)) throw invalid(`the revision "${revision}" has a bad character`);
  return { epoch, upstream, revision };
}

/**
 * Compares two Debian versions with dpkg's algorithm: epochs as numbers, then upstream and
 * revision alternately as runs of non-digits (letters before other characters, `~` before
 * everything, even the end of the string) and runs of digits (numerically).
 * Returns a negative number, zero or a positive number, like a sort comparator.
 */
export function compareDebianVersions(a: string, b: string): number {
  const left = parseDebianVersion(a);
  const right = parseDebianVersion(b);
  if (left.epoch !== right.epoch) return left.epoch < right.epoch ? -1 : 1;
  return (
    Math.sign(compareFragments(left.upstream, right.upstream)) ||
    Math.sign(compareFragments(left.revision, right.revision))
  );
}

/** Whether `version` stands in `relation` to `constraint`, as in `Depends: libc6 (>= 2.36)`. */
export function satisfiesVersion(version: string, relation: VersionRelation, constraint: string): boolean {
  const order = compareDebianVersions(version, constraint);
  switch (relation) {
    case '<<':
      return order < 0;
    case '<=':
      return order <= 0;
    case '=':
      return order === 0;
    case '>=':
      return order >= 0;
    case '>>':
      return order > 0;
  }
}

const isDigit = (code: number) => code >= 48 && code <= 57;
const isLetter = (code: number) => (code >= 65 && code <= 90) || (code >= 97 && code <= 122);

/** dpkg's character weight inside a non-digit run; 0 is the end of the string (and any digit). */
function weight(text: string, index: number): number {
  if (index >= text.length) return 0;
  const code = text.charCodeAt(index);
  if (isDigit(code)) return 0;
  if (isLetter(code)) return code;
  if (code === 126 /* ~ */) return -1;
  return code + 256;
}

function compareFragments(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const difference = weight(a, i) - weight(b, j);
      if (difference !== 0) return difference;
      i++;
      j++;
    }
    while (a.charCodeAt(i) === 48) i++;
    while (b.charCodeAt(j) === 48) j++;
    let firstDifference = 0;
    while (i < a.length && j < b.length && isDigit(a.charCodeAt(i)) && isDigit(b.charCodeAt(j))) {
      if (firstDifference === 0) firstDifference = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < a.length && isDigit(a.charCodeAt(i))) return 1;
    if (j < b.length && isDigit(b.charCodeAt(j))) return -1;
    if (firstDifference !== 0) return firstDifference;
  }
  return 0;
}
