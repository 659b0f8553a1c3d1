import { describe, expect, it } from 'vitest';
import { Stk500v2Double } from './doubles/stk500v2-double.ts';
import { flashBoard } from './flash-board.ts';
import { describeFlasherProtocol, testImage } from './flasher-protocol.contract.ts';
import { encodeStk500v2Frame } from './stk500v2.ts';

describeFlasherProtocol('stk500v2', {
  boardId: 'mega2560',
  makeDouble: () => new Stk500v2Double(),
  portPath: '/dev/ttyACM0',
  bootloaderPath: '/dev/ttyACM0',
});

describe('stk500v2 specifics', () => {
  it('frames a message with start, sequence, size, token and an XOR checksum', () => {
    expect([...encodeStk500v2Frame(1, [0x01])]).toEqual([0x1b, 0x01, 0x00, 0x01, 0x0e, 0x01, 0x14]);
  });

  it('writes past 128 KiB with the extended-address flag on every LOAD_ADDRESS', async () => {
    const mega = new Stk500v2Double();
    const image = testImage(0x20000 + 3 * 256);
    await flashBoard({ board: 'mega2560', portPath: '/dev/ttyACM0', image, openLink: mega.open });
    expect(mega.flash.subarray(0x1ff00, 0x20300)).toEqual(image.bytes.subarray(0x1ff00, 0x20300));
    // One LOAD_ADDRESS per page written and per page read back.
    expect(mega.extendedAddressLoads).toBe(2 * (0x20000 / 256 + 3));
  });
});
