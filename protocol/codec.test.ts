import { describe, expect, it } from 'vitest';
import { decodePayload, encodePayload, MAX_JSON_DEPTH } from './codec.ts';
import { deviceTopic, isValidDeviceId, MAX_PAYLOAD_BYTES, parseDeviceTopic } from './topics.ts';

const health = {
  at: 1_700_000_000_000,
  uptimeSeconds: 12.5,
  load: [0.1, 0.2, 0.3],
  memory: { totalBytes: 1024, availableBytes: 512 },
  disk: { totalBytes: 4096, freeBytes: 2048 },
  cpuTemperatureCelsius: null,
  agentRssBytes: 40_000_000,
};

describe('payload codec', () => {
  it('round-trips a valid health payload', () => {
    const decoded = decodePayload('health', encodePayload('health', health as never));
    expect(decoded).toEqual({ ok: true, value: health });
  });

  it.each([
    ['not-json', '{"at": 1,'],
    ['schema', JSON.stringify({ ...health, load: [1, 2] })],
    ['schema', JSON.stringify({ ...health, unexpected: true })],
    ['oversized', 'x'.repeat(MAX_PAYLOAD_BYTES + 1)],
  ])('rejects a %s payload with a reason instead of throwing', (reason, payload) => {
    const decoded = decodePayload('health', payload);
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) {
      expect(decoded.reason).toBe(reason);
      expect(decoded.detail.length).toBeGreaterThan(0);
    }
  });

  it('names the offending field in a schema error', () => {
    const decoded = decodePayload('presence', JSON.stringify({ state: 'dancing', reason: 'started', at: 1 }));
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) expect(decoded.detail).toMatch(/^state:/);
  });
});

describe('payload shape limits', () => {
  const event = (data: unknown) => JSON.stringify({ id: 'e1', at: 1, type: 'note', data: { value: data } });
  const nested = (levels: number): unknown => (levels === 0 ? 1 : [nested(levels - 1)]);

  it('refuses an event nested deeper than the limit as too-deep, however deep', () => {
    // The event object and its data take two levels.
    expect(decodePayload('events', event(nested(MAX_JSON_DEPTH - 2))).ok).toBe(true);
    for (const levels of [MAX_JSON_DEPTH - 1, 20_000]) {
      const payload = `{"id":"e1","at":1,"type":"note","data":{"value":${'['.repeat(levels)}${']'.repeat(levels)}}}`;
      const decoded = decodePayload('events', payload);
      expect(decoded).toMatchObject({ ok: false, reason: 'too-deep' });
    }
  });

  it('removes NUL characters from every string and key', () => {
    const decoded = decodePayload(
      'events',
      JSON.stringify({
        id: 'e\u00001',
        at: 1,
        type: 'note',
        message: 'got \u0000 from the board',
        data: { 'k\u0000ey': ['a\u0000b', { inner: '\u0000' }] },
      }),
    );
    expect(decoded).toEqual({
      ok: true,
      value: {
        id: 'e1',
        at: 1,
        type: 'note',
        message: 'got  from the board',
        data: { key: ['ab', { inner: '' }] },
      },
    });
  });

  it('drops `__proto__` keys at any depth, written plainly or behind escapes (seed -1608984218)', () => {
    for (const key of ['__proto__', '\\u005f_proto__']) {
      const text = `{"id":"e1","at":1,"type":"note","data":{"list":[{"${key}":{"polluted":true},"kept":1}]}}`;
      const decoded = decodePayload('events', text);
      expect(decoded).toEqual({
        ok: true,
        value: { id: 'e1', at: 1, type: 'note', data: { list: [{ kept: 1 }] } },
      });
      const list = (decoded as unknown as { value: { data: { list: object[] } } }).value.data.list;
      expect(Object.hasOwn(list[0]!, '__proto__')).toBe(false);
    }
  });
});

describe('topics', () => {
  it('parses only well-formed device topics', () => {
    expect(parseDeviceTopic(deviceTopic('dev-1', 'health'))).toEqual({
      deviceId: 'dev-1',
      channel: 'health',
    });
    expect(parseDeviceTopic('boardfleet/v1/devices/dev-1/health/extra')).toBeNull();
    expect(parseDeviceTopic('boardfleet/v1/devices/+/health')).toBeNull();
    expect(parseDeviceTopic('boardfleet/v1/devices/dev-1/unknown')).toBeNull();
  });

  it.each(['a+b', 'a#b', 'a/b', '', 'UPPER', '$SYS', 'x'.repeat(65)])('refuses %j as a device id', (id) => {
    expect(isValidDeviceId(id)).toBe(false);
  });
});
