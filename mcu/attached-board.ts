import { basename } from 'node:path';
import { getSerialBoard, isUf2Board, type McuBoard, type Uf2Board } from '../boards/board-catalogue.ts';
import { BoardfleetError, isBoardfleetError } from '../protocol/errors.ts';
import { resolvePort } from './flasher/find-port.ts';
import { flashBoard } from './flasher/flash-board.ts';
import {
  copyUf2ToDrive,
  type DriveSearchSources,
  findBootselDrive,
  readUf2File,
} from './flasher/uf2-drive.ts';
import { type ProbeResult, probeBoard } from './probe/probe-board.ts';
import { pluggedPortPaths, waitForUf2FirmwarePort } from './ports/serial-ports.ts';

/** The serial side effects of an attached board: flashing it and probing it. */
export interface AttachedBoardAccess {
  readonly portPath: string;
  readonly board: McuBoard | Uf2Board;
  /** The file a firmware release for this board is: Intel HEX for AVR boards, UF2 for UF2 boards. */
  readonly firmwareExtension: '.hex' | '.uf2';
  /** The device path to open now (`portPath`, or the board looked up by USB id when it is `auto`). */
  resolvePort(): Promise<string>;
  flash(firmwarePath: string, signal?: AbortSignal): Promise<void>;
  probe(): Promise<ProbeResult>;
}

/**
 * A board on one of this machine's serial ports, as the agent's `mcu-serial` strategy uses it.
 * With port `auto`, the port is looked up by USB id at every use, since a board that was
 * unplugged and plugged back can come back as another /dev/ttyACM*. A UF2 board (the Pico) is
 * flashed through its BOOTSEL drive, found in the mount table (`drives` points the search elsewhere).
 */
export function serialAttachedBoard(
  boardId: string,
  port: string,
  drives: DriveSearchSources = {},
): AttachedBoardAccess {
  const board = getSerialBoard(boardId);
  if (isUf2Board(board)) return uf2AttachedBoard(board, port, drives);
  const boardPort = () => resolvePort(port, board);
  return {
    board,
    portPath: port,
    firmwareExtension: '.hex',
    resolvePort: boardPort,
    async flash(hexPath, signal) {
      await flashBoard({ board, hexPath, portPath: await boardPort(), ...(signal ? { signal } : {}) });
    },
    async probe() {
      return probeBoard({ portPath: await boardPort(), ledPin: board.ledPin });
    },
  };
}

/** How long a Pico's firmware port may take to appear after the boot ROM rebooted it. */
const REENUMERATE_TIMEOUT_MS = 15_000;

function uf2AttachedBoard(board: Uf2Board, port: string, drives: DriveSearchSources): AttachedBoardAccess {
  const boardPort = () => resolvePort(port, board);
  return {
    board,
    portPath: port,
    firmwareExtension: '.uf2',
    resolvePort: boardPort,
    async flash(uf2Path, signal) {
      signal?.throwIfAborted();
      // Checked first, so a bad file never reaches the drive.
      const uf2 = await readUf2File(uf2Path, board);
      const drivePath = await findBootselDrive(board, drives).catch((error: unknown) => {
        if (isBoardfleetError(error) && error.code === 'uf2-drive-not-found') {
          throw new BoardfleetError(
            'needs-bootsel',
            `The ${board.id} on ${port} needs BOOTSEL: no ${board.uf2.volumeLabel} drive is mounted ` +
              `(hold BOOTSEL and plug it in)`,
            { cause: error },
          );
        }
        throw error;
      });
      const before = port === 'auto' ? await pluggedPortPaths() : undefined;
      await copyUf2ToDrive({ uf2, drivePath, fileName: basename(uf2Path) });
      // The health check's probe follows at once: give the rebooted board's port time to come up.
      if (before) await waitForUf2FirmwarePort(board, { known: before, timeoutMs: REENUMERATE_TIMEOUT_MS });
    },
    async probe() {
      return probeBoard({ portPath: await boardPort(), ledPin: board.ledPin });
    },
  };
}
