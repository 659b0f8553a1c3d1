import { describe, expect, it } from 'vitest';
import { type Board, getBoard } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { BootloaderDouble } from './doubles/bootloader-double.ts';
import { type FlashOptions, type FlashProgress, flashBoard } from './flash-board.ts';
import type { FirmwareImage } from './intel-hex.ts';

export interface FlasherProtocolCase {
  boardId: string;
  makeDouble: () => BootloaderDouble;
  /** The port the user names. */
  portPath: string;
  /** The port the bootloader answers on (differs after a 1200-baud touch). */
  bootloaderPath: string;
  /** Extra options, such as the double's port lister. */
  options?: (double: BootloaderDouble) => Partial<FlashOptions>;
}

/** A sketch-like image: not a whole number of pages, with no 0xFF runs that could hide a skipped page. */
export function testImage(size: number): FirmwareImage {
  const bytes = Uint8Array.from({ length: size }, (_, i) => (i * 7 + (i >> 8)) % 251);
  return { bytes, dataBytes: size };
}

async function expectFlashError(promise: Promise<unknown>, code: string, message: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(BoardfleetError);
  expect(error).toMatchObject({ code, message });
}

/**
 * The behaviour every flasher protocol owes, run against that protocol's bootloader double:
 * a full flash with verify, and each failure with the exact message a person sees.
 */
export function describeFlasherProtocol(protocol: string, testCase: FlasherProtocolCase): void {
  const board: Board = getBoard(testCase.boardId);
  const image = testImage(board.flash.pageSize * 12 + 37);
  const pages = 13;
  const flash = (double: BootloaderDouble, extra: Partial<FlashOptions> = {}) =>
    flashBoard({
      board,
      portPath: testCase.portPath,
      image,
      openLink: double.open,
      ...testCase.options?.(double),
      ...extra,
    });

  describe(`${protocol} against its bootloader double (${board.name})`, () => {
    it('writes every page, verifies it and starts the sketch', async () => {
      const double = testCase.makeDouble();
      const progress: FlashProgress[] = [];
      const result = await flash(double, { onProgress: (event) => progress.push(event) });

      expect(double.flash.subarray(0, image.bytes.length)).toEqual(image.bytes);
      expect(
        double.flash.subarray(image.bytes.length, pages * board.flash.pageSize).every((b) => b === 0xff),
      ).toBe(true);
      expect(double.appStarts).toBe(1);
      expect(double.mode).toBe('app');
      expect(result).toMatchObject({
        board: board.id,
        portPath: testCase.bootloaderPath,
        protocol,
        mcu: board.mcu,
        bytesWritten: pages * board.flash.pageSize,
        pages,
        bytesVerified: pages * board.flash.pageSize,
      });
      expect(result.bytesPerSecond).toBeGreaterThan(0);
      expect(progress[0]).toEqual({ phase: 'sync', done: 0, total: 1 });
      expect(progress.filter((event) => event.phase === 'write')).toHaveLength(pages);
      expect(progress.at(-1)).toEqual({
        phase: 'verify',
        done: pages * board.flash.pageSize,
        total: pages * board.flash.pageSize,
      });
    });

    it('names the port, baud rate, board and attempts when the bootloader never answers', async () => {
      const double = testCase.makeDouble();
      double.faults.silent = true;
      await expectFlashError(
        flash(double, { syncAttempts: 3 }),
        'bootloader-no-answer',
        `No answer from the bootloader on ${testCase.bootloaderPath} at ${board.upload.baudRate} baud after 3 attempts ` +
          `(board: ${board.name}, ${protocol}). ${expectedHint(board)}`,
      );
      expect(double.appStarts).toBe(0);
    });

    it('refuses a chip whose signature is not the board’s, naming the chip found', async () => {
      const double = testCase.makeDouble();
      double.options.signature = [0x1e, 0x94, 0x06];
      await expectFlashError(
        flash(double),
        'signature-mismatch',
        `Wrong chip on ${testCase.bootloaderPath}: it reports signature 1e 94 06 (atmega168), but ${board.name} has an ` +
          `${board.mcu} (${board.signature.map((b) => b.toString(16).padStart(2, '0')).join(' ')}). ` +
          `Pick the --board that matches (see "boardfleet boards").`,
      );
      expect(double.flash.every((b) => b === 0xff)).toBe(true);
    });

    it('reports the page reached when the port vanishes, and a second flash recovers the board', async () => {
      const double = testCase.makeDouble();
      double.faults.loseLinkAtPage = 5;
      await expectFlashError(
        flash(double),
        'port-lost',
        `${testCase.bootloaderPath} went away while writing page 5 of ${pages} (address 0x${(
          4 * board.flash.pageSize
        )
          .toString(16)
          .toUpperCase()
          .padStart(
            4,
            '0',
          )}): was the board unplugged or reset? The bootloader is untouched; plug it back in and flash again.`,
      );
      expect(double.flash.subarray(0, image.bytes.length)).not.toEqual(image.bytes);

      double.replug();
      await flash(double);
      expect(double.flash.subarray(0, image.bytes.length)).toEqual(image.bytes);
      expect(double.appStarts).toBe(1);
    });

    it('fails the verify at the first byte that reads back wrong', async () => {
      const double = testCase.makeDouble();
      double.faults.corruptReadAt = 0x105;
      const expectedByte = image.bytes[0x105]!;
      const page = Math.floor(0x105 / board.flash.pageSize);
      const pageAddress = (page * board.flash.pageSize).toString(16).toUpperCase().padStart(4, '0');
      await expectFlashError(
        flash(double),
        'verify-failed',
        `Verify failed on ${testCase.bootloaderPath}: the page at 0x${pageAddress} (page ${page + 1} of ${pages}) ` +
          `reads 0x${(expectedByte ^ 1).toString(16).toUpperCase().padStart(2, '0')} at 0x0105, expected ` +
          `0x${expectedByte.toString(16).toUpperCase().padStart(2, '0')}. The write did not take; flash again, ` +
          `and if it fails at the same address the chip's flash may be worn.`,
      );
    });

    it('says the port is busy when another program holds it', async () => {
      const double = testCase.makeDouble();
      const holder = await double.open(testCase.portPath, 9600);
      await expectFlashError(
        flash(double),
        'port-busy',
        `${testCase.portPath} is in use by another program (a serial monitor, the Arduino IDE, a running boardfleet ` +
          `agent or flash); close it and try again`,
      );
      await holder.close();
    });

    it('stops between pages when aborted', async () => {
      const double = testCase.makeDouble();
      const controller = new AbortController();
      await expectFlashError(
        flash(double, {
          signal: controller.signal,
          onProgress: (event) => {
            if (event.phase === 'write' && event.done === 2 * board.flash.pageSize) controller.abort();
          },
        }),
        'flash-aborted',
        `Flashing was cancelled before writing page 3 of ${pages} (address 0x${(2 * board.flash.pageSize)
          .toString(16)
          .toUpperCase()
          .padStart(4, '0')}); the sketch on the board is incomplete until it is flashed again`,
      );
    });
  });
}

function expectedHint(board: Board): string {
  switch (board.id) {
    case 'uno':
      return 'Is it an Uno with optiboot? For an old Nano try --board nano:old-bootloader.';
    case 'mega2560':
      return 'Is it a Mega 2560 with the STK500v2 bootloader? If nothing resets it (no DTR wire), press reset just before flashing.';
    case 'leonardo':
      return 'Is it a Leonardo with Caterina? If its sketch has hung USB, press reset twice quickly and flash within 8 s.';
    default:
      throw new Error(`no expected hint for ${board.id}`);
  }
}
