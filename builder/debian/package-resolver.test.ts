import { describe, expect, it } from 'vitest';
import { PackagesParser, parseRelations, parseRelease, type ControlStanza } from './debian-control.ts';
import { PackageIndex, resolveDependencies, type ArchivePackage } from './package-resolver.ts';

const ARCHIVE = 'test (main) for arm64';

function pkg(name: string, version: string, fields: Partial<ArchivePackage> = {}): ArchivePackage {
  return {
    name,
    version,
    architecture: 'arm64',
    depends: '',
    preDepends: '',
    provides: '',
    filename: `pool/main/${name[0]}/${name}/${name}_${version}_arm64.deb`,
    size: 1000,
    sha256: '0'.repeat(64),
    source: name,
    sourceVersion: version,
    description: name,
    component: 'main',
    ...fields,
  };
}

function indexOf(...packages: ArchivePackage[]): PackageIndex {
  const index = new PackageIndex('arm64');
  for (const entry of packages) index.add(entry);
  return index;
}

const names = (index: PackageIndex, request: string[], exclude?: string[]) =>
  resolveDependencies(index, request, { archiveName: ARCHIVE, exclude }).map(
    (entry) => `${entry.package.name}=${entry.package.version}`,
  );

describe('resolveDependencies', () => {
  const base = indexOf(
    pkg('libc6', '2.36-9+deb12u9', { depends: 'libgcc-s1' }),
    pkg('libgcc-s1', '12.2.0-14', { depends: 'gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)' }),
    pkg('gcc-12-base', '12.2.0-14'),
    pkg('libstdc++6', '12.2.0-14', {
      depends: 'gcc-12-base (= 12.2.0-14), libc6 (>= 2.36), libgcc-s1 (>= 4.5)',
    }),
  );

  it('follows Depends to a sorted closure and records who needs what', () => {
    const result = resolveDependencies(base, ['libstdc++6'], { archiveName: ARCHIVE });
    expect(result.map((entry) => [entry.package.name, entry.requiredBy, entry.requested])).toEqual([
      ['gcc-12-base', ['libgcc-s1', 'libstdc++6'], false],
      ['libc6', ['libgcc-s1', 'libstdc++6'], false],
      ['libgcc-s1', ['libc6', 'libstdc++6'], false],
      ['libstdc++6', [], true],
    ]);
  });

  it('follows Pre-Depends too', () => {
    const index = indexOf(pkg('a', '1', { preDepends: 'b' }), pkg('b', '1'));
    expect(names(index, ['a'])).toEqual(['a=1', 'b=1']);
  });

  it('picks the newest version that meets a constraint', () => {
    const index = indexOf(
      pkg('a', '1', { depends: 'b (<< 3)' }),
      pkg('b', '2'),
      pkg('b', '3'),
      pkg('b', '2.5~rc1'),
    );
    expect(names(index, ['a'])).toEqual(['a=1', 'b=2.5~rc1']);
  });

  it('takes the first alternative the archive has', () => {
    const index = indexOf(pkg('a', '1', { depends: 'missing | c | b' }), pkg('b', '1'), pkg('c', '1'));
    expect(names(index, ['a'])).toEqual(['a=1', 'c=1']);
  });

  it('prefers an alternative already selected', () => {
    const index = indexOf(pkg('a', '1', { depends: 'c | b' }), pkg('b', '1'), pkg('c', '1'));
    expect(names(index, ['a', 'b'])).toEqual(['a=1', 'b=1']);
  });

  it('skips an alternative whose version is too old', () => {
    const index = indexOf(pkg('a', '1', { depends: 'b (>= 2) | c' }), pkg('b', '1'), pkg('c', '1'));
    expect(names(index, ['a'])).toEqual(['a=1', 'c=1']);
  });

  it('treats :any and :native as this architecture and accepts Architecture all', () => {
    const index = indexOf(
      pkg('a', '1', { depends: 'perl:any, python3:native' }),
      pkg('perl', '5.36', { architecture: 'all' }),
      pkg('python3', '3.11'),
      pkg('ignored', '1', { architecture: 'armhf' }),
    );
    expect(names(index, ['a'])).toEqual(['a=1', 'perl=5.36', 'python3=3.11']);
    expect(index.versionsOf('ignored')).toEqual([]);
  });

  it('satisfies a virtual package through its only provider, versioned provides for versioned dependencies', () => {
    const index = indexOf(
      pkg('a', '1', { depends: 'awk, libgcc1 (>= 1:4)' }),
      pkg('mawk', '1.3.4', { provides: 'awk' }),
      pkg('libgcc-s1', '12.2.0-14', { provides: 'libgcc1 (= 1:12.2.0-14)' }),
    );
    expect(names(index, ['a'])).toEqual(['a=1', 'libgcc-s1=12.2.0-14', 'mawk=1.3.4']);
  });

  it('asks for a choice when several packages provide a virtual one, unless one is requested', () => {
    const index = indexOf(
      pkg('a', '1', { depends: 'mail-transport-agent' }),
      pkg('exim4', '4.96', { provides: 'mail-transport-agent' }),
      pkg('postfix', '3.7', { provides: 'mail-transport-agent' }),
    );
    expect(() => names(index, ['a'])).toThrow(
      'mail-transport-agent is a virtual package provided by exim4, postfix: name the one you want in the package list',
    );
    expect(names(index, ['a', 'postfix'])).toEqual(['a=1', 'postfix=3.7']);
  });

  it('leaves out excluded packages and the dependency groups that name them', () => {
    const index = indexOf(
      pkg('a', '1', { depends: 'debconf (>= 0.5) | debconf-2.0, b', preDepends: 'dpkg (>= 1.15)' }),
      pkg('b', '1'),
      pkg('cdebconf', '1', { provides: 'debconf-2.0' }),
    );
    expect(names(index, ['a'], ['debconf', 'dpkg'])).toEqual(['a=1', 'b=1']);
  });

  it('names an unknown package and who wanted it', () => {
    const index = indexOf(pkg('a', '1', { depends: 'b (>= 1), nothere' }), pkg('b', '1'));
    expect(() => names(index, ['a'])).toThrow(`nothere (wanted by a 1) is not in ${ARCHIVE}`);
    expect(() => names(index, ['busybox-statc'])).toThrow(
      `busybox-statc (wanted by the requested package list) is not in ${ARCHIVE}`,
    );
  });

  it('says which versions exist when a constraint cannot be met', () => {
    const index = indexOf(pkg('a', '1', { depends: 'libc6 (>= 2.40) | libc6.1' }), pkg('libc6', '2.36-9'));
    expect(() => names(index, ['a'])).toThrow(
      `libc6 (>= 2.40) | libc6.1 (wanted by a 1) cannot be met from ${ARCHIVE}: the archive has only libc6 2.36-9`,
    );
  });

  it('refuses a dependency on another architecture', () => {
    const index = indexOf(pkg('a', '1', { depends: 'b:amd64' }), pkg('b', '1'));
    expect(() => names(index, ['a'])).toThrow(
      `b:amd64 (wanted by a 1) cannot be met from ${ARCHIVE}: the qualifier :amd64 names another architecture`,
    );
  });

  it('refuses a name both requested and excluded', () => {
    expect(() => names(base, ['libc6'], ['libc6'])).toThrow('libc6 is both requested and excluded');
  });
});

describe('control file parsing', () => {
  it('parses relations with alternatives, qualifiers and obsolete operators', () => {
    expect(parseRelations('a (>= 1.0) | b:any, c (< 2), d', 'x Depends')).toEqual([
      [
        { name: 'a', relation: '>=', version: '1.0' },
        { name: 'b', qualifier: 'any' },
      ],
      [{ name: 'c', relation: '<=', version: '2' }],
      [{ name: 'd' }],
    ]);
    expect(() => parseRelations('a (>= 1.0', 'x 1 Depends')).toThrow(
      'cannot read the dependency "a (>= 1.0" in x 1 Depends',
    );
  });

  it('reads Packages paragraphs across chunk boundaries, keeping wanted fields and restoring UTF-8', () => {
    const stanzas: ControlStanza[] = [];
    const parser = new PackagesParser(new Set(['Package', 'Depends', 'Description']), (stanza) =>
      stanzas.push(stanza),
    );
    const text = [
      'Package: a',
      'Maintainer: Jörg <j@example.org>',
      'Depends: b,',
      ' c',
      'Description: café tools',
      ' the long description is dropped',
      '',
      'Package: b',
      '',
      '',
      'Package: c',
    ].join('\n');
    const bytes = Buffer.from(text, 'utf8');
    // 7-byte chunks split lines and the two bytes of "é".
    for (let i = 0; i < bytes.length; i += 7) parser.push(bytes.subarray(i, i + 7).toString('latin1'));
    parser.end();
    expect(stanzas.map((stanza) => Object.fromEntries(stanza))).toEqual([
      { Package: 'a', Depends: 'b,\nc', Description: 'café tools' },
      { Package: 'b' },
      { Package: 'c' },
    ]);
  });

  it('reads the SHA256 list and the fields of a Release file', () => {
    const release = parseRelease(
      [
        'Suite: oldstable',
        'Codename: bookworm',
        'Date: Sat, 11 Jul 2026 10:16:37 UTC',
        'Acquire-By-Hash: yes',
        'Architectures: all arm64',
        'Components: main non-free-firmware',
        'MD5Sum:',
        ' 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 main/binary-arm64/Packages.xz',
        'SHA256:',
        ` ${'a'.repeat(64)}  8689464 main/binary-arm64/Packages.xz`,
      ].join('\n'),
      'InRelease',
    );
    expect(release).toMatchObject({
      suite: 'oldstable',
      codename: 'bookworm',
      date: new Date('2026-07-11T10:16:37Z'),
      validUntil: undefined,
      acquireByHash: true,
      components: ['main', 'non-free-firmware'],
    });
    expect([...release.sha256]).toEqual([
      ['main/binary-arm64/Packages.xz', { sha256: 'a'.repeat(64), size: 8689464 }],
    ]);
    expect(() => parseRelease('Suite: x', 'http://m/InRelease')).toThrow(
      'http://m/InRelease has no SHA256 list of index files',
    );
  });
});
