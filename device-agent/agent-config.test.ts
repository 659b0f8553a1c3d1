import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentSecretsFromEnvironment, loadAgentConfig, readSecretFiles } from './agent-config.ts';

describe('agent configuration', () => {
  it('defaults the linux-ab paths to where a Boardfleet image puts them', () => {
    expect(loadAgentConfig({ server: 'http://fleet.local:8080' }).linuxAb).toEqual({
      slotsFile: '/etc/boardfleet/slots.json',
      bootDir: '/boot/firmware',
      cmdlineFile: '/proc/cmdline',
      bootIdFile: '/proc/sys/kernel/random/boot_id',
      healthTimeoutSeconds: 180,
    });
  });

  it('takes linux-ab settings from the config file and lists every bad key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-agent-config-'));
    const file = join(dir, 'boardfleet.json');
    writeFileSync(
      file,
      JSON.stringify({ server: 'http://fleet.local:8080', linuxAb: { bootDir: '/mnt/boot' } }),
    );
    expect(loadAgentConfig({}, file).linuxAb).toMatchObject({
      bootDir: '/mnt/boot',
      slotsFile: '/etc/boardfleet/slots.json',
    });

    writeFileSync(
      file,
      JSON.stringify({
        server: 'http://fleet.local:8080',
        linuxAb: { healthTimeoutSeconds: 0, bootdir: '/x' },
      }),
    );
    expect(() => loadAgentConfig({}, file)).toThrow(
      /invalid agent configuration:\n {2}linuxAb\.healthTimeoutSeconds: .*\n {2}linuxAb: Unrecognized key: "bootdir"/,
    );
  });
});

describe('agent configuration: vm', () => {
  it('has no vm strategy unless configured, and fills in the defaults of one that is', () => {
    expect(loadAgentConfig({ server: 'http://fleet.local:8080' }).vm).toBeUndefined();
    expect(
      loadAgentConfig({
        server: 'http://fleet.local:8080',
        vm: { publish: [{ hostPort: 80, guestPort: 8080 }] },
      }).vm,
    ).toEqual({
      publish: [{ hostPort: 80, guestPort: 8080, address: '0.0.0.0' }],
      accelerator: 'auto',
      readyTimeoutSeconds: 180,
      env: {},
    });
  });

  it('refuses ports out of range, unknown accelerators and environment names the kernel would misread', () => {
    expect(() =>
      loadAgentConfig({
        server: 'http://fleet.local:8080',
        vm: { publish: [{ hostPort: 70000, guestPort: 8080 }], accelerator: 'xen', env: { 'a.b': '1' } },
      }),
    ).toThrow(
      /vm\.publish\.0\.hostPort: .*\n {2}vm\.accelerator: .*\n {2}vm\.env\.a\.b: .*upper-case letters, digits and _/,
    );
  });
});

describe('agent configuration: secrets', () => {
  const file = (content: string) => {
    const path = join(mkdtempSync(join(tmpdir(), 'boardfleet-agent-secret-')), 'secret');
    writeFileSync(path, content, { mode: 0o600 });
    return path;
  };

  it('reads the secret and the provisioning token from files, without the trailing newline', () => {
    const config = loadAgentConfig({
      server: 'http://fleet.local:8080',
      deviceId: 'dev-1',
      secretFile: file('bfd_secret\n'),
      provisioningTokenFile: file('  bfp_token\n'),
    });
    expect(config).toMatchObject({ secret: 'bfd_secret', provisioningToken: 'bfp_token' });
    expect(config).not.toHaveProperty('secretFile');
  });

  it('lets a file given as a flag win over a secret in the config file', () => {
    const configFile = file(JSON.stringify({ server: 'http://fleet.local:8080', secret: 'bfd_old' }));
    expect(loadAgentConfig({ secretFile: file('bfd_new') }, configFile).secret).toBe('bfd_new');
  });

  it('refuses a secret given twice at one level, an empty file and a missing one, never quoting a secret', () => {
    expect(() =>
      readSecretFiles({ secret: 'bfd_inline', secretFile: file('bfd_file') }, 'the environment'),
    ).toThrow('both secret and secretFile given in the environment: give one');
    expect(() => readSecretFiles({ provisioningTokenFile: file('\n') }, 'the flags')).toThrow(/is empty$/);
    expect(() => readSecretFiles({ secretFile: '/nonexistent/secret' }, 'the flags')).toThrow(
      'cannot read secretFile /nonexistent/secret: ENOENT',
    );
  });

  it('takes the secrets from BOARDFLEET_SECRET[_FILE] and BOARDFLEET_PROVISIONING_TOKEN[_FILE]', () => {
    const path = file('bfd_from_file');
    expect(
      readSecretFiles(
        agentSecretsFromEnvironment({
          BOARDFLEET_SECRET_FILE: path,
          BOARDFLEET_PROVISIONING_TOKEN: 'bfp_env',
        }),
        'the environment',
      ),
    ).toMatchObject({ secret: 'bfd_from_file', provisioningToken: 'bfp_env' });
  });
});
