/** Firmata's pin mode numbers, as SET_PIN_MODE and the capability response use them. */
export const MODE = { INPUT: 0, OUTPUT: 1, ANALOG: 2, PWM: 3, SERVO: 4, PULLUP: 0x0b } as const;

/** Decodes the board-to-host Firmata byte stream into messages, for assertions in tests. */
export type FirmataMessage =
  | { kind: 'version'; major: number; minor: number }
  | { kind: 'digital'; port: number; value: number }
  | { kind: 'analog'; channel: number; value: number }
  | { kind: 'sysex'; command: number; data: number[] };

export class FirmataDecoder {
  readonly messages: FirmataMessage[] = [];
  private buffer: number[] = [];

  push(byte: number): void {
    if (byte >= 0x80 && byte !== 0xf7) this.buffer = [];
    this.buffer.push(byte);
    const [first = 0] = this.buffer;
    if (first === 0xf0) {
      if (byte === 0xf7) {
        const [, command = 0, ...data] = this.buffer.slice(0, -1);
        this.messages.push({ kind: 'sysex', command, data });
        this.buffer = [];
      }
      return;
    }
    if (this.buffer.length < 3) return;
    const [, low = 0, high = 0] = this.buffer;
    const value = low | (high << 7);
    if (first === 0xf9) this.messages.push({ kind: 'version', major: low, minor: high });
    else if ((first & 0xf0) === 0x90) this.messages.push({ kind: 'digital', port: first & 0x0f, value });
    else if ((first & 0xf0) === 0xe0) this.messages.push({ kind: 'analog', channel: first & 0x0f, value });
    this.buffer = [];
  }
}

/** Joins the two-bytes-per-character encoding of STRING_DATA and REPORT_FIRMWARE names. */
export function decodeTwoByteString(data: number[]): string {
  let text = '';
  for (let i = 0; i + 1 < data.length; i += 2)
    text += String.fromCharCode((data[i] ?? 0) | ((data[i + 1] ?? 0) << 7));
  return text;
}

export function sysex(command: number, ...data: number[]): number[] {
  return [0xf0, command, ...data, 0xf7];
}

/** The data of every sysex reply with this command, in order. */
export function sysexReplies(messages: FirmataMessage[], command: number): number[][] {
  return messages.flatMap((message) =>
    message.kind === 'sysex' && message.command === command ? [message.data] : [],
  );
}

/** The capability response as one record of mode → resolution per pin. */
export function capabilityPins(capabilities: number[]): Array<Record<number, number>> {
  const pins: Array<Record<number, number>> = [{}];
  for (let i = 0; i < capabilities.length;) {
    const mode = capabilities[i] as number;
    if (mode === 0x7f) {
      pins.push({});
      i += 1;
    } else {
      (pins.at(-1) as Record<number, number>)[mode] = capabilities[i + 1] as number;
      i += 2;
    }
  }
  pins.pop();
  return pins;
}
