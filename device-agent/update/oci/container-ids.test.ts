import { chmodSync, lstatSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { closedAncestor, letContainersPass } from './container-ids.ts';

const dir = mkdtempSync(join(tmpdir(), 'oci-ids-'));
chmodSync(dir, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// A group the test may give its folders whoever runs it: its own.
const group = process.getgid?.() ?? 0;

describe('letting containers pass', () => {
  it("opens a private data dir and the folders under it to the containers' group only (0710), nothing above", () => {
    const dataDir = join(dir, 'agent-data');
    const root = join(dataDir, 'oci');
    mkdirSync(root, { recursive: true, mode: 0o700 });
    chmodSync(dataDir, 0o700);
    letContainersPass(root, dataDir, group);
    for (const folder of [dataDir, root]) {
      expect(lstatSync(folder).mode & 0o777).toBe(0o710);
      expect(lstatSync(folder).gid).toBe(group);
    }
    expect(lstatSync(dir).mode & 0o777).toBe(0o755);
  });

  it('refuses a root that is not under the private folder it names', () => {
    expect(() => letContainersPass(join(dir, 'a'), join(dir, 'b'), group)).toThrow(/is not under/);
  });

  it("finds the first folder a container's root may not pass, by its other or group bits", () => {
    const closed = join(dir, 'closed');
    const inner = join(closed, 'oci');
    mkdirSync(inner, { recursive: true });
    chmodSync(closed, 0o710);
    // Group-passable only for another group than the containers' one.
    expect(closedAncestor(inner, group + 1)).toEqual({ dir: closed, mode: 0o710 });
    expect(closedAncestor(inner, group)).toBeNull();
    chmodSync(closed, 0o701);
    expect(closedAncestor(inner, group + 1)).toBeNull();
  });
});
