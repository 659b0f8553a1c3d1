/** One server-sent event: its name (`message` when the server gave none), data text and id. */
export interface ServerSentEvent {
  event: string;
  data: string;
  id: string | null;
}

/**
 * Splits a text/event-stream into events as chunks arrive (chunks may cut anywhere, even inside
 * a line). Comment lines (`: keep-alive`) are dropped; multi-line data is joined with newlines,
 * as the HTML living standard's event-stream rules say.
 */
export class SseParser {
  private buffer = '';

  push(chunk: string): ServerSentEvent[] {
    this.buffer += chunk;
    const events: ServerSentEvent[] = [];
    let boundary = this.nextBoundary();
    while (boundary) {
      const block = this.buffer.slice(0, boundary.index);
      this.buffer = this.buffer.slice(boundary.index + boundary.length);
      const event = parseBlock(block);
      if (event) events.push(event);
      boundary = this.nextBoundary();
    }
    return events;
  }

  private nextBoundary(): { index: number; length: number } | null {
    const match = /\r?\n\r?\n/.exec(this.buffer);
    return match ? { index: match.index, length: match[0].length } : null;
  }
}

function parseBlock(block: string): ServerSentEvent | null {
  let event = 'message';
  let id: string | null = null;
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
  }
  if (data.length === 0) return null;
  return { event, data: data.join('\n'), id };
}
