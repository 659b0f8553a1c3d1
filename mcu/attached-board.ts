import { type Board, getBoard } from '../boards/board-catalogue.ts';
import { findBoardPort } from './flasher/find-port.ts';
import { flashBoard } from './flasher/flash-board.ts';
import { type ProbeResult, probeBoard } from './probe/probe-board.ts';

/** The serial side effects of an attached board: flashing it and probing it. */
export interface AttachedBoardAccess {
  readonly portPath: string;
  readonly board: Board;
  /** The device path to open now (`portPath`, or the board looked up by USB id when it is `auto`). */
  resolvePort(): Promise<string>;
  flash(hexPath: string, signal?: AbortSignal): Promise<void>;
  probe(): Promise<ProbeResult>;
}

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
    resolvePort,
    async flash(hexPath, signal) {
      await flashBoard({ board, hexPath, portPath: await resolvePort(), ...(signal ? { signal } : {}) });
    },
    async probe() {
      return probeBoard({ portPath: await resolvePort(), ledPin: board.ledPin });
    },
  };
}
