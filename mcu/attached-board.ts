import { getBoard } from '../boards/board-catalogue.ts';
import type { AttachedBoardAccess } from '../device-agent/update/mcu-serial.strategy.ts';
import { findBoardPort } from './flasher/find-port.ts';
import { flashBoard } from './flasher/flash-board.ts';
import { probeBoard } from './probe/probe-board.ts';

/**
 * A board on one of this machine's serial ports, as the agent's `mcu-serial` strategy uses it.
 * With port `auto`, the port is looked up by USB id at every use, since a board that was
 * unplugged and plugged back can come back as another /dev/ttyACM*.
 */
export function serialAttachedBoard(boardId: string, port: string): AttachedBoardAccess {
  const board = getBoard(boardId);
  const resolvePort = () => (port === 'auto' ? findBoardPort(board) : Promise.resolve(port));
  return {
    board,
    portPath: port,
    async flash(hexPath, signal) {
      await flashBoard({ board, hexPath, portPath: await resolvePort(), ...(signal ? { signal } : {}) });
    },
    async probe() {
      return probeBoard({ portPath: await resolvePort(), ledPin: board.ledPin });
    },
  };
}
