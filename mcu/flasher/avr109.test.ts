import { describe, expect, it } from 'vitest';
import { waitForBootloaderPort } from './avr109.ts';
import { CaterinaDouble } from './doubles/caterina-double.ts';
import { flashBoard } from './flash-board.ts';
import { describeFlasherProtocol, testImage } from './flasher-protocol.contract.ts';

describeFlasherProtocol('avr109', {
  boardId: 'leonardo',
  makeDouble: () => new CaterinaDouble(),
  portPath: '/dev/ttyACM0',
  bootloaderPath: '/dev/ttyACM1',
  options: (double) => ({ listPorts: (double as CaterinaDouble).listPorts }),
});

describe('avr109 and the 1200-baud touch', () => {
  it('finds the bootloader when it comes back on the same path as the sketch', async () => {
    const leonardo = new CaterinaDouble({ bootloaderPath: '/dev/ttyACM0' });
    const result = await flashBoard({
      board: 'leonardo',
      portPath: '/dev/ttyACM0',
      image: testImage(500),
      openLink: leonardo.open,
      listPorts: leonardo.listPorts,
    });
    expect(result.portPath).toBe('/dev/ttyACM0');
    expect(leonardo.flash.subarray(0, 500)).toEqual(testImage(500).bytes);
  });

  it('waits for a port that is new, ignoring ports that were there before', async () => {
    const listed = [['/dev/ttyS0', '/dev/ttyACM0'], ['/dev/ttyS0'], ['/dev/ttyS0', '/dev/ttyACM3']];
    let call = 0;
    const path = await waitForBootloaderPort('/dev/ttyACM0', ['/dev/ttyS0', '/dev/ttyACM0'], {
      listPorts: async () => (listed[Math.min(call++, listed.length - 1)] ?? []).map((p) => ({ path: p })),
      pollMs: 1,
    });
    expect(path).toBe('/dev/ttyACM3');
  });

  it('falls back to the given port when no bootloader port appears, and says so if nothing answers there', async () => {
    const hung = new CaterinaDouble({ ignoresTouch: true });
    const error = await flashBoard({
      board: 'leonardo',
      portPath: '/dev/ttyACM0',
      image: testImage(500),
      openLink: hung.open,
      listPorts: hung.listPorts,
      portWaitMs: 300,
      syncAttempts: 2,
    }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({
      code: 'bootloader-no-answer',
      message:
        'No answer from the bootloader on /dev/ttyACM0 at 57600 baud after 2 attempts (board: Arduino Leonardo, avr109). ' +
        'Is it a Leonardo with Caterina? If its sketch has hung USB, press reset twice quickly and flash within 8 s.',
    });
  });
});
