import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BUILD_DIR, MANIFEST, freshBuild } from './compiled-cli.js';

const BUILT_AT = Date.parse('2026-01-01T12:00:00Z');
const COMMANDS = [{ names: ['devices'], term: 'devices', description: 'Add and list devices', module: 1 }];

describe('freshBuild', () => {
  let root: string;
  const rootUrl = () => pathToFileURL(`${root}/`);
  const source = (path: string, modifiedAt: number) => {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), '');
    utimesSync(join(root, path), modifiedAt / 1000, modifiedAt / 1000);
  };
  const writeManifest = (inputs: string[]) => {
    mkdirSync(join(root, BUILD_DIR), { recursive: true });
    writeFileSync(
      join(root, BUILD_DIR, MANIFEST),
      JSON.stringify({ startedAt: BUILT_AT, inputs, commands: COMMANDS }),
    );
  };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'compiled-cli-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('gives the command index while every source is older than the build', () => {
    source('cli/main.ts', BUILT_AT - 60_000);
    source('server/app.ts', BUILT_AT - 1);
    writeManifest(['cli/main.ts', 'server/app.ts']);
    expect(freshBuild(rootUrl())).toEqual({ commands: COMMANDS });
  });

  it('calls the build stale once a source it read has changed since it started', () => {
    source('cli/main.ts', BUILT_AT - 60_000);
    source('server/app.ts', BUILT_AT + 1);
    writeManifest(['cli/main.ts', 'server/app.ts']);
    expect(freshBuild(rootUrl())).toBeNull();
  });

  it('calls the build stale when a source it read is gone', () => {
    source('cli/main.ts', BUILT_AT - 60_000);
    writeManifest(['cli/main.ts', 'cli/removed.ts']);
    expect(freshBuild(rootUrl())).toBeNull();
  });

  it('finds no build where there is none', () => {
    expect(freshBuild(rootUrl())).toBeNull();
  });
});
