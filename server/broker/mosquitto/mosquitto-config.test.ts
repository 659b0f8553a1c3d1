import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashDynsecPassword, initialDynsecState } from './mosquitto-config.ts';
import { findMosquitto } from './mosquitto-install.ts';

describe('Mosquitto configuration', () => {
  it('hashes a dynamic-security password exactly as `mosquitto_ctrl dynsec init` does', () => {
    // Written by mosquitto_ctrl 2.0.11 for the password "secretpw".
    const salt = Buffer.from('m3FWrhcxaMxbi+YX', 'base64');
    expect(hashDynsecPassword('secretpw', salt)).toEqual({
      password: 'T/F3HHjslT7B3EHYnypFUTo27D60M9jRuQ5iJKDp3XrbZm7ZeJGB/Yk164HA+Dl36gZbrbfsZzRt2XvzYnWFqA==',
      salt: 'm3FWrhcxaMxbi+YX',
      iterations: 101,
    });
  });

  it('salts every password anew', () => {
    const state = initialDynsecState({ adminPassword: 'same', serverPassword: 'same' });
    const [admin, server] = state.clients;
    expect(admin?.salt).not.toBe(server?.salt);
    expect(admin?.password).not.toBe(server?.password);
  });

  it('names the package to install when the dynamic-security plugin is nowhere', () => {
    const empty = mkdtempSync(join(tmpdir(), 'boardfleet-no-plugin-'));
    try {
      expect(() =>
        findMosquitto({ packageName: 'boardfleet-no-such-package', pluginDirectories: [empty] }),
      ).toThrow(/mosquitto_dynamic_security\.so\) is not installed.*sudo apt-get install mosquitto/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
