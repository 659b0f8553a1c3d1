import { describe, expect, it } from 'vitest';
import { defaultArtifactName } from './artifact.command.ts';

describe('the artifact name a pushed file gives', () => {
  it.each([
    ['hello-1.0.0.tar.gz', '1.0.0', 'hello'],
    ['dist/Hello_v2.1.0.tgz', '2.1.0', 'hello'],
    ['firmata.hex', '2.5.0', 'firmata'],
    ['app-1.0.0-rc.1+b7.tar.zst', '1.0.0-rc.1+b7', 'app'],
    ['pi-minimal-1.2.0.img.zst', '1.2.0', 'pi-minimal'],
    ['1.0.0.tar.gz', '1.0.0', '1.0.0'],
    ['app-1.0.0.tar.gz', '2.0.0', 'app-1.0.0'],
  ])('%s as version %s is %s', (file, version, name) => {
    expect(defaultArtifactName(file, version)).toBe(name);
  });
});
