import { getBoard } from '../../boards/board-catalogue.ts';

/** What a build needs to know about a board. */
export interface BuildTarget {
  boardId: string;
  mcu: string;
  fCpu: number;
  /** Flash the application may use: total flash minus the bootloader. */
  flashLimit: number;
  ramLimit: number;
  /** Arduino core variant folder (pin names for sketches) and the ARDUINO_<board> macro. */
  arduinoVariant: string;
  arduinoBoardMacro: string;
  /** For an MCU with native USB: the id and name the sketch's USB device reports (USB_VID, USB_PID, USB_PRODUCT). */
  nativeUsb: { vendorId: number; productId: number; product: string } | null;
}

/** MCUs whose Arduino core speaks USB itself (USBCON), needing the board's USB ids to compile. */
const NATIVE_USB_MCUS = new Set(['atmega32u4', 'atmega16u4']);

/** The build's view of a board file; an unknown board is an error listing the known ones. */
export function resolveBuildTarget(boardId: string): BuildTarget {
  const board = getBoard(boardId);
  return {
    boardId: board.id,
    mcu: board.mcu,
    fCpu: board.clockHz,
    flashLimit: board.applicationFlashSize,
    ramLimit: board.ramSize,
    arduinoVariant: board.arduinoCore.variant,
    arduinoBoardMacro: board.arduinoCore.boardMacro,
    // A board file lists the sketch's own USB id first, before its bootloader's.
    nativeUsb:
      NATIVE_USB_MCUS.has(board.mcu) && board.usb[0]
        ? { vendorId: board.usb[0].vendorId, productId: board.usb[0].productId, product: board.name }
        : null,
  };
}
