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
}

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
  };
}
