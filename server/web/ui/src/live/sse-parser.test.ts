import { describe, expect, it } from 'vitest';
import { SseParser } from './sse-parser.ts';

describe('SseParser', () => {
  it('reads events whose lines are cut across chunks', () => {
    const parser = new SseParser();
    expect(parser.push('id: 7\nevent: pres')).toEqual([]);
    expect(parser.push('ence\ndata: {"deviceId":"d1",')).toEqual([]);
    expect(parser.push('"online":true}\n\nid: 8\n')).toEqual([
      { event: 'presence', data: '{"deviceId":"d1","online":true}', id: '7' },
    ]);
    expect(parser.push('data: x\n\n')).toEqual([{ event: 'message', data: 'x', id: '8' }]);
  });

  it('drops keep-alive comments and joins multi-line data', () => {
    const parser = new SseParser();
    expect(parser.push(': keep-alive\n\nevent: log\r\ndata: one\r\ndata: two\r\n\r\n')).toEqual([
      { event: 'log', data: 'one\ntwo', id: null },
    ]);
  });
});
