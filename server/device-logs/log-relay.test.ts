import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { LogBatch, LogLine, LogWatch } from '../../protocol/device-logs.ts';
import { LogRelay, type LogSink } from './log-relay.ts';

const line = (seq: number): LogLine => ({
  seq,
  at: 1_000 + seq,
  source: 'app:demo',
  stream: 'stdout',
  text: `n ${seq}`,
});
const batch = (watch: string, fields: Partial<LogBatch>): Buffer =>
  Buffer.from(JSON.stringify({ watch, lines: [], ...fields }));

/** A sink that records what the operator's stream would show. */
function recordingSink() {
  const events: string[] = [];
  const seqs: number[] = [];
  const sink: LogSink = {
    line: (received) => seqs.push(received.seq),
    caughtUp: (through) => events.push(`caught-up ${through}`),
    device: (online) => events.push(`device ${online}`),
    error: (code, message) => events.push(`error ${code}: ${message}`),
    end: () => events.push('end'),
  };
  return { sink, events, seqs };
}

let relays: LogRelay[] = [];
afterEach(() => {
  for (const relay of relays) relay.stop();
  relays = [];
});

function relayWith(options: { answerMs?: number; renewMs?: number } = {}) {
  const sent: Array<{ deviceId: string; message: LogWatch }> = [];
  const relay = new LogRelay({
    publish: async (deviceId, message) => {
      sent.push({ deviceId, message });
    },
    now: () => 50_000,
    logger: pino({ level: 'silent' }),
    ...options,
  });
  relays.push(relay);
  return { relay, sent };
}

describe('LogRelay', () => {
  it("asks for an attached board's serial output at the speed given", () => {
    const { relay, sent } = relayWith();
    const { sink } = recordingSink();
    relay.open('dev-1', { sources: ['board:/dev/ttyACM0'], baud: 9600, follow: true, online: true }, sink);
    expect(sent[0]?.message).toMatchObject({ action: 'start', sources: ['board:/dev/ttyACM0'], baud: 9600 });
  });

  it('asks for the newest lines, relays them once each, and resumes after the last one when the device comes back', () => {
    const { relay, sent } = relayWith();
    const { sink, events, seqs } = recordingSink();
    relay.open('dev-1', { sources: ['app:demo'], tail: 100, follow: true, online: true }, sink);
    const start = sent[0]?.message as LogWatch;
    expect(start).toMatchObject({ action: 'start', tail: 100, follow: true, leaseUntil: 80_000 });
    relay.receive('dev-1', batch(start.watch, { lines: [line(5), line(6)], through: 9, caughtUp: true }));
    relay.receive('dev-1', batch(start.watch, { lines: [line(10)], through: 10 }));
    relay.presenceChanged('dev-1', false);
    relay.presenceChanged('dev-1', true);
    expect(sent.at(-1)?.message).toMatchObject({ action: 'start', afterSeq: 10, watch: start.watch });
    expect(sent.at(-1)?.message.tail).toBeUndefined();
    // The restarted agent repeats a line the relay already passed on: dropped.
    relay.receive('dev-1', batch(start.watch, { lines: [line(10), line(11)], through: 11, caughtUp: true }));
    expect(seqs).toEqual([5, 6, 10, 11]);
    expect(events).toEqual(['caught-up 9', 'device false', 'device true', 'caught-up 11']);
  });

  it('ignores batches of other watches and batches a device sends for another device', () => {
    const { relay, sent } = relayWith();
    const { sink, seqs } = recordingSink();
    relay.open('dev-1', { follow: true, online: true }, sink);
    const id = (sent[0]?.message as LogWatch).watch;
    relay.receive('dev-2', batch(id, { lines: [line(1)] }));
    relay.receive('dev-1', batch('someone-else', { lines: [line(2)] }));
    relay.receive('dev-1', Buffer.from('not json'));
    relay.receive('dev-1', batch(id, { lines: [line(3)] }));
    expect(seqs).toEqual([3]);
  });

  it('passes the agent refusal on as an error and forgets the watch', () => {
    const { relay, sent } = relayWith();
    const { sink, events } = recordingSink();
    relay.open('dev-1', { sources: ['app:nope'], follow: true, online: true }, sink);
    const id = (sent[0]?.message as LogWatch).watch;
    relay.receive(
      'dev-1',
      batch(id, {
        end: true,
        error: 'no app named nope on this device (apps: demo)',
        errorCode: 'log-source-unknown',
      }),
    );
    expect(events).toEqual(['error log-source-unknown: no app named nope on this device (apps: demo)']);
    expect(relay.count()).toBe(0);
  });

  it('sends stop when the reader leaves, and nothing more after', () => {
    const { relay, sent } = relayWith();
    const { sink } = recordingSink();
    const close = relay.open('dev-1', { follow: true, online: true }, sink);
    close();
    expect(sent.map((entry) => entry.message.action)).toEqual(['start', 'stop']);
    expect(relay.count()).toBe(0);
  });

  it('waits for an offline device when following, and ends a backlog request when the device leaves', () => {
    const { relay, sent } = relayWith();
    const following = recordingSink();
    relay.open('dev-1', { follow: true, online: false }, following.sink);
    expect(sent).toEqual([]);
    expect(following.events).toEqual(['device false']);
    relay.presenceChanged('dev-1', true);
    expect(sent.map((entry) => entry.message.action)).toEqual(['start']);

    const backlog = recordingSink();
    relay.open('dev-1', { follow: false, online: true }, backlog.sink);
    relay.presenceChanged('dev-1', false);
    expect(backlog.events).toEqual([
      'device false',
      'error device-offline: device dev-1 went offline before its logs were sent',
    ]);
  });

  it('fails a watch the device never answers', async () => {
    const { relay } = relayWith({ answerMs: 20 });
    const { sink, events } = recordingSink();
    relay.open('dev-1', { follow: true, online: true }, sink);
    const deadline = Date.now() + 5_000;
    while (events.length === 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(events[0]).toMatch(/^error device-no-answer: device dev-1 did not answer/);
  });
});
