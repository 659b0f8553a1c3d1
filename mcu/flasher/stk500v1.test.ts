import { describe, expect, it } from 'vitest';
import { getBoard } from '../../boards/board-catalogue.ts';
import { OptibootDouble } from './doubles/optiboot-double.ts';
import { flashBoard } from './flash-board.ts';
import { describeFlasherProtocol, testImage } from './flasher-protocol.contract.ts';

describeFlasherProtocol('stk500v1', {
  boardId: 'uno',
  makeDouble: () => new OptibootDouble('/dev/ttyACM0', 'uno'),
  portPath: '/dev/ttyACM0',
  bootloaderPath: '/dev/ttyACM0',
});

describe('stk500v1 specifics', () => {
  it('tells an old Nano apart: no answer at 115200 names the old-bootloader variant after 10 attempts', async () => {
    const oldNano = new OptibootDouble('/dev/ttyACM0', 'nano:old-bootloader');
    const error = await flashBoard({
      board: 'uno',
      portPath: '/dev/ttyACM0',
      image: testImage(1000),
      openLink: oldNano.open,
    }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({
      code: 'bootloader-no-answer',
      message:
        'No answer from the bootloader on /dev/ttyACM0 at 115200 baud after 10 attempts (board: Arduino Uno, stk500v1). ' +
        'Is it an Uno with optiboot? For an old Nano try --board nano:old-bootloader.',
    });

    await flashBoard({
      board: 'nano:old-bootloader',
      portPath: '/dev/ttyACM0',
      image: testImage(1000),
      openLink: oldNano.open,
    });
    expect(oldNano.flash.subarray(0, 1000)).toEqual(testImage(1000).bytes);
  });

  it('resets the board with a DTR pulse: a board left in its sketch answers only after it', async () => {
    const uno = new OptibootDouble();
    expect(uno.mode).toBe('app');
    await flashBoard({ board: 'uno', portPath: '/dev/ttyACM0', image: testImage(300), openLink: uno.open });
    expect(uno.appStarts).toBe(1);
  });

  it('refuses an image that would overwrite the bootloader before touching the port', async () => {
    const uno = new OptibootDouble();
    const board = getBoard('uno');
    const error = await flashBoard({
      board,
      portPath: '/dev/ttyACM0',
      image: testImage(board.applicationFlashSize + 1),
      openLink: uno.open,
    }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({
      code: 'hex-too-big',
      message:
        'The firmware needs 32257 bytes of flash but Arduino Uno has 32256 for sketches (32768 minus 512 for the bootloader); ' +
        'make the sketch smaller or pick a bigger board',
    });
    expect(uno.mode).toBe('app');
  });
});
