import { expect, it } from 'vitest';
import {
  decodeTwoByteString,
  type FirmataDecoder,
  type FirmataMessage,
  sysex,
  sysexReplies,
} from './firmata-messages.ts';

/** A board running Boardfleet Firmata in an emulator: the replies decoded so far, and send-then-run. */
export interface BootedFirmata {
  decoder: FirmataDecoder;
  exchange: (bytes: number[]) => Promise<FirmataMessage[]> | FirmataMessage[];
}

/** How every build of Boardfleet Firmata, whatever its MCU, names itself: at start-up and when asked. */
export function itIdentifiesAsBoardfleetFirmata(boot: () => Promise<BootedFirmata>): void {
  it('announces protocol version 2.6 and its firmware name and version at start-up', async () => {
    const { decoder } = await boot();
    expect(decoder.messages[0]).toEqual({ kind: 'version', major: 2, minor: 6 });
    const [firmware] = sysexReplies(decoder.messages, 0x79);
    expect(firmware?.slice(0, 2)).toEqual([1, 0]);
    expect(decodeTwoByteString(firmware?.slice(2) ?? [])).toBe('BoardfleetFirmata');
  });

  it('answers REPORT_VERSION and REPORT_FIRMWARE queries', async () => {
    const { exchange } = await boot();
    const replies = await exchange([0xf9, ...sysex(0x79)]);
    expect(replies[0]).toEqual({ kind: 'version', major: 2, minor: 6 });
    expect(sysexReplies(replies, 0x79)).toHaveLength(1);
  });
}
