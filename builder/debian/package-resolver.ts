import { BoardfleetError } from '../../protocol/errors.ts';
import { parseRelations, type Relation } from './debian-control.ts';
import { compareDebianVersions, satisfiesVersion } from './debian-version.ts';

/** A binary package as a Packages index describes it (only the fields the builder uses). */
export interface ArchivePackage {
  name: string;
  version: string;
  architecture: string;
  /** Raw `Depends:` / `Pre-Depends:` / `Provides:` fields, parsed only when the resolver needs them. */
  depends: string;
  preDepends: string;
  provides: string;
  /** Path of the .deb relative to the mirror root (`pool/main/b/busybox/…`). */
  filename: string;
  size: number;
  sha256: string;
  /** Source package name and version (the binary's own version when the index omits it). */
  source: string;
  sourceVersion: string;
  /** First line of the description. */
  description: string;
  component: string;
}

interface Provider {
  provider: ArchivePackage;
  /** The version a versioned `Provides: name (= version)` gives; unversioned provides satisfy only unversioned dependencies. */
  version: string | undefined;
}

/** Every package of the loaded components, by name and by what it provides. */
export class PackageIndex {
  private readonly byName = new Map<string, ArchivePackage[]>();
  private providerMap: Map<string, Provider[]> | undefined;

  constructor(private readonly architecture: string) {}

  add(pkg: ArchivePackage): void {
    if (pkg.architecture !== this.architecture && pkg.architecture !== 'all') return;
    const versions = this.byName.get(pkg.name);
    if (versions) versions.push(pkg);
    else this.byName.set(pkg.name, [pkg]);
    this.providerMap = undefined;
  }

  get size(): number {
    let count = 0;
    for (const versions of this.byName.values()) count += versions.length;
    return count;
  }

  /** The versions of a real package, newest first. */
  versionsOf(name: string): ArchivePackage[] {
    return [...(this.byName.get(name) ?? [])].sort((a, b) => compareDebianVersions(b.version, a.version));
  }

  /** Packages whose `Provides:` names `name`. Built on first use: most builds never need it. */
  providersOf(name: string): Provider[] {
    if (!this.providerMap) {
      this.providerMap = new Map();
      for (const versions of this.byName.values()) {
        for (const pkg of versions) {
          if (pkg.provides === '') continue;
          for (const [provided] of parseRelations(pkg.provides, `${pkg.name} ${pkg.version} Provides`)) {
            if (!provided) continue;
            const list = this.providerMap.get(provided.name) ?? [];
            list.push({ provider: pkg, version: provided.relation === '=' ? provided.version : undefined });
            this.providerMap.set(provided.name, list);
          }
        }
      }
    }
    return this.providerMap.get(name) ?? [];
  }
}

export interface ResolveOptions {
  /** Names never pulled in: a dependency group naming any of them counts as met. */
  exclude?: string[];
  /** Names the archive in errors, e.g. "bookworm (main, non-free-firmware) for arm64". */
  archiveName: string;
}

export interface Resolution {
  package: ArchivePackage;
  /** Names of the selected packages whose dependencies this one meets, sorted. */
  requiredBy: string[];
  /** Whether it was named in the request (rather than pulled in). */
  requested: boolean;
}

const REQUEST = 'the requested package list';

/**
 * The closure of `names` over Depends and Pre-Depends, sorted by name. For `a | b` the first
 * alternative the archive can satisfy wins, unless another is already selected. Recommends,
 * Conflicts and Breaks are not considered: the image is assembled as data, never installed.
 */
export function resolveDependencies(
  index: PackageIndex,
  names: string[],
  options: ResolveOptions,
): Resolution[] {
  const excluded = new Set(options.exclude ?? []);
  const selected = new Map<
    string,
    { package: ArchivePackage; requiredBy: Set<string>; requested: boolean }
  >();
  const queue: ArchivePackage[] = [];

  const select = (pkg: ArchivePackage, wantedBy: string | undefined) => {
    let entry = selected.get(pkg.name);
    if (!entry) {
      entry = { package: pkg, requiredBy: new Set(), requested: wantedBy === undefined };
      selected.set(pkg.name, entry);
      queue.push(pkg);
    }
    if (wantedBy !== undefined) entry.requiredBy.add(wantedBy);
  };

  for (const name of [...new Set(names)].sort()) {
    if (excluded.has(name)) {
      throw new BoardfleetError('archive-resolve-conflict', `${name} is both requested and excluded`);
    }
    const relation: Relation = { name };
    const candidate = candidateFor(index, relation, selected);
    if (!candidate) throw unresolvable(index, [relation], REQUEST, options.archiveName);
    select(candidate, undefined);
  }

  while (queue.length > 0) {
    const pkg = queue.shift() as ArchivePackage;
    const groups = [
      ...parseRelations(pkg.preDepends, `${pkg.name} ${pkg.version} Pre-Depends`),
      ...parseRelations(pkg.depends, `${pkg.name} ${pkg.version} Depends`),
    ];
    for (const group of groups) {
      if (group.some((alternative) => excluded.has(alternative.name))) continue;
      const chosen = chooseAlternative(index, group, selected);
      if (!chosen) {
        throw unresolvable(index, group, `${pkg.name} ${pkg.version}`, options.archiveName);
      }
      select(chosen, pkg.name);
    }
  }

  return [...selected.values()]
    .sort((a, b) => (a.package.name < b.package.name ? -1 : a.package.name > b.package.name ? 1 : 0))
    .map((entry) => ({
      package: entry.package,
      requiredBy: [...entry.requiredBy].sort(),
      requested: entry.requested,
    }));
}

/** An alternative already selected wins; otherwise the first one the archive can satisfy, in order. */
function chooseAlternative(
  index: PackageIndex,
  group: Relation[],
  selected: Map<string, { package: ArchivePackage }>,
): ArchivePackage | undefined {
  for (const alternative of group) {
    const candidate = selectedCandidate(index, alternative, selected);
    if (candidate) return candidate;
  }
  for (const alternative of group) {
    const candidate = candidateFor(index, alternative, selected);
    if (candidate) return candidate;
  }
  return undefined;
}

function qualifierAllowed(relation: Relation): boolean {
  // One architecture per image: `:any` and `:native` both mean "this architecture".
  return relation.qualifier === undefined || relation.qualifier === 'any' || relation.qualifier === 'native';
}

function versionMatches(version: string | undefined, relation: Relation): boolean {
  if (!relation.relation || !relation.version) return true;
  return version !== undefined && satisfiesVersion(version, relation.relation, relation.version);
}

/** A package already selected that satisfies `relation` (itself, or through its Provides). */
function selectedCandidate(
  index: PackageIndex,
  relation: Relation,
  selected: Map<string, { package: ArchivePackage }>,
): ArchivePackage | undefined {
  if (!qualifierAllowed(relation)) return undefined;
  const real = selected.get(relation.name)?.package;
  if (real && versionMatches(real.version, relation)) return real;
  return index
    .providersOf(relation.name)
    .find(
      ({ provider, version }) =>
        selected.get(provider.name)?.package === provider && versionMatches(version, relation),
    )?.provider;
}

/** The package that satisfies `relation`: the newest matching real package, else a unique provider. */
function candidateFor(
  index: PackageIndex,
  relation: Relation,
  selected: Map<string, { package: ArchivePackage }>,
): ArchivePackage | undefined {
  if (!qualifierAllowed(relation)) return undefined;
  const real = index.versionsOf(relation.name).find((pkg) => versionMatches(pkg.version, relation));
  if (real) return real;
  const already = selectedCandidate(index, relation, selected);
  if (already) return already;
  const providers = index
    .providersOf(relation.name)
    .filter(({ version }) => versionMatches(version, relation));
  const names = [...new Set(providers.map(({ provider }) => provider.name))].sort();
  if (names.length > 1) {
    throw new BoardfleetError(
      'archive-virtual-ambiguous',
      `${relation.name} is a virtual package provided by ${names.join(', ')}: name the one you want in the package list`,
    );
  }
  return providers
    .map(({ provider }) => provider)
    .sort((a, b) => compareDebianVersions(b.version, a.version))[0];
}

function describe(relation: Relation): string {
  const qualifier = relation.qualifier ? `:${relation.qualifier}` : '';
  const version = relation.relation ? ` (${relation.relation} ${relation.version})` : '';
  return `${relation.name}${qualifier}${version}`;
}

function unresolvable(
  index: PackageIndex,
  group: Relation[],
  wantedBy: string,
  archiveName: string,
): BoardfleetError {
  const wanted = group.map(describe).join(' | ');
  const available = group.flatMap((relation) => [
    ...index.versionsOf(relation.name).map((pkg) => `${pkg.name} ${pkg.version}`),
    ...index
      .providersOf(relation.name)
      .map(
        ({ provider, version }) =>
          `${provider.name} ${provider.version} (provides ${relation.name}${version ? ` = ${version}` : ''})`,
      ),
  ]);
  if (available.length === 0) {
    return new BoardfleetError(
      'archive-package-unknown',
      `${wanted} (wanted by ${wantedBy}) is not in ${archiveName}`,
    );
  }
  const qualified = group.find((relation) => !qualifierAllowed(relation));
  const why = qualified
    ? `the qualifier :${qualified.qualifier} names another architecture`
    : `the archive has only ${[...new Set(available)].join(', ')}`;
  return new BoardfleetError(
    'archive-unsatisfiable',
    `${wanted} (wanted by ${wantedBy}) cannot be met from ${archiveName}: ${why}`,
  );
}
