import { describe, expect, it } from 'vitest';
import { containerEnvironment, containerUser, publishedPorts, runtimeConfig } from './runtime-config.ts';

const passwd = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n';
const group = 'root:x:0:\nstaff:x:50:\napp:x:1001:\n';

describe('containerUser', () => {
  it.each<[string | undefined, { uid: number; gid: number }]>([
    [undefined, { uid: 0, gid: 0 }],
    ['', { uid: 0, gid: 0 }],
    ['1000', { uid: 1000, gid: 1001 }],
    ['4242', { uid: 4242, gid: 4242 }],
    ['1000:50', { uid: 1000, gid: 50 }],
    ['app', { uid: 1000, gid: 1001 }],
    ['app:staff', { uid: 1000, gid: 50 }],
  ])('reads User %j', (user, ids) => expect(containerUser(user, passwd, group)).toEqual(ids));

  it.each([
    ['nobody-here', /user nobody-here is not in its \/etc\/passwd/],
    ['app:nogroup', /group nogroup is not in its \/etc\/group/],
  ])('refuses User %s', (user, message) => expect(() => containerUser(user, passwd, group)).toThrow(message));
});

describe('containerEnvironment', () => {
  it.each<[string[], Record<string, string>, string[]]>([
    [[], {}, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']],
    [['PATH=/app', 'A=1=2'], {}, ['PATH=/app', 'A=1=2']],
    [['A=image', 'B=image'], { A: 'config' }, expect.arrayContaining(['A=config', 'B=image'])],
  ])('merges %j with the configuration %j', (env, config, expected) =>
    expect(containerEnvironment(env, config)).toEqual(expected),
  );
});

describe('publishedPorts', () => {
  it('reads ExposedPorts, tcp when the protocol is not said', () => {
    expect(publishedPorts({ ExposedPorts: { '8080/tcp': {}, '53/udp': {}, '9000': {}, junk: {} } })).toEqual([
      // Integer keys come first in a JavaScript object.
      { port: 9000, protocol: 'tcp' },
      { port: 8080, protocol: 'tcp' },
      { port: 53, protocol: 'udp' },
    ]);
  });
});

describe('runtimeConfig', () => {
  const options = {
    rootfs: '/data/oci/rootfs-app-1.0.0',
    hostname: 'app',
    uidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
    gidMappings: [{ containerID: 0, hostID: 100000, size: 65536 }],
    environment: { GREETING: 'hello' },
    passwd,
    group,
    hostNetworkFiles: ['/etc/resolv.conf'],
  };

  it('runs Entrypoint and Cmd as the image user, unprivileged, on a read-only root with the host network', () => {
    const config = runtimeConfig(
      { Entrypoint: ['/app'], Cmd: ['--port', '8080'], User: 'app', WorkingDir: '/srv', Env: ['A=1'] },
      options,
    );
    expect(config.process.args).toEqual(['/app', '--port', '8080']);
    expect(config.process.user).toEqual({ uid: 1000, gid: 1001 });
    expect(config.process.cwd).toBe('/srv');
    expect(config.process.env).toContain('GREETING=hello');
    expect(config.process.noNewPrivileges).toBe(true);
    expect(config.process.capabilities.bounding).toEqual([]);
    expect(config.root).toEqual({ path: options.rootfs, readonly: true });
    expect(config.linux.namespaces.map((ns) => ns.type)).toContain('user');
    expect(config.linux.namespaces.map((ns) => ns.type)).not.toContain('network');
    expect(config.linux.uidMappings).toEqual(options.uidMappings);
    expect(config.mounts.map((mount) => mount.destination)).toEqual(
      expect.arrayContaining(['/proc', '/dev', '/tmp', '/run', '/sys', '/etc/resolv.conf']),
    );
  });

  it.each([
    [{}, /neither Entrypoint nor Cmd/],
    [{ Cmd: ['/app'], User: '70000' }, /user 70000:70000 is outside the ids/],
  ])('refuses %j', (image, message) => expect(() => runtimeConfig(image, options)).toThrow(message));
});
