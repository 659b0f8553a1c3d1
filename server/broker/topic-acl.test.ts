import { describe, expect, it } from 'vitest';
import { isAcceptableClientIdentity, mayDevicePublish, mayDeviceSubscribe } from './topic-acl.ts';

const own = (channel: string) => `boardfleet/v1/devices/dev-a/${channel}`;

describe('topic ACL', () => {
  it.each(['presence', 'inventory', 'health', 'events', 'certificate-request'])(
    'lets a device publish its own %s',
    (channel) => {
      expect(mayDevicePublish('dev-a', own(channel))).toBe(true);
    },
  );

  it.each([
    own('desired'),
    own('commands'),
    own('certificate'),
    'boardfleet/v1/devices/dev-b/certificate-request',
    'boardfleet/v1/server/hello',
    'boardfleet/v1/devices/dev-b/health',
    'boardfleet/v1/devices/dev-a/health/x',
    '$SYS/broker/clients',
    'other/topic',
  ])('refuses a device publishing to %s', (topic) => {
    expect(mayDevicePublish('dev-a', topic)).toBe(false);
  });

  it.each(['desired', 'commands', 'certificate'])('lets a device subscribe to its own %s', (channel) => {
    expect(mayDeviceSubscribe('dev-a', own(channel))).toBe(true);
  });

  it("lets every device read the server's hello", () => {
    expect(mayDeviceSubscribe('dev-a', 'boardfleet/v1/server/hello')).toBe(true);
  });

  it.each([
    '#',
    '+/#',
    '$SYS/#',
    'boardfleet/#',
    'boardfleet/v1/server/#',
    'boardfleet/v1/devices/+/desired',
    'boardfleet/v1/devices/dev-a/#',
    'boardfleet/v1/devices/dev-a/+',
    'boardfleet/v1/devices/dev-b/desired',
    'boardfleet/v1/devices/dev-b/certificate',
    own('health'),
    own('certificate-request'),
  ])('refuses a device subscribing to %s', (filter) => {
    expect(mayDeviceSubscribe('dev-a', filter)).toBe(false);
  });

  it.each([
    ['dev-a', 'dev-b'],
    ['dev+a', 'dev+a'],
    ['dev#a', 'dev#a'],
    ['dev/a', 'dev/a'],
    ['dev-a', undefined],
  ])('refuses client id %j with username %j', (clientId, username) => {
    expect(isAcceptableClientIdentity(clientId, username)).toBe(false);
  });
});
