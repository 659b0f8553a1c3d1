import { basename, extname } from 'node:path';
import type { Uf2Board } from '../../boards/board-catalogue.ts';
import { buildUf2Firmware } from '../../builder/mcu/rp2040/build-uf2-firmware.ts';
import { copyUf2ToDrive, findBootselDrive, readUf2File } from '../../mcu/flasher/uf2-drive.ts';
import {
  formatUsbId,
  pluggedPortPaths,
  uf2FirmataWiring,
  waitForUf2FirmwarePort,
} from '../../mcu/ports/serial-ports.ts';
import { probeBoard } from '../../mcu/probe/probe-board.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { formatBytes, printJson } from '../output.ts';
import { progressBar } from '../progress.ts';

/** How long the board may take to come back as a serial port once the boot ROM rebooted it. */
const REENUMERATE_TIMEOUT_MS = 15_000;

export interface Uf2FlashOptions {
  port: string;
  drive?: string;
  json?: boolean;
}

/**
 * `boardfleet flash TARGET --board pico`: the UF2 (a .uf2 file as it is, or a recipe built first)
 * copied onto the board's BOOTSEL drive, then the board, rebooted into it, probed for Firmata on
 * `--port`, or on the serial port that appears with its firmware's USB id.
 */
export async function flashUf2Board(
  target: string,
  board: Uf2Board,
  options: Uf2FlashOptions,
  say: (line: string) => void,
): Promise<void> {
  // Found before a build that may take a while.
  const drivePath = await findBootselDrive(
    board,
    options.drive !== undefined ? { drive: options.drive } : {},
  );
  const uf2Path = await firmwareUf2Path(target, board, say);
  const uf2 = await readUf2File(uf2Path, board);
  const portsBefore = options.port === 'auto' ? await pluggedPortPaths() : undefined;

  const controller = new AbortController();
  const abort = () => controller.abort();
  process.once('SIGINT', abort);
  let bar = options.json ? undefined : progressBar(`Copying to ${drivePath}`, uf2.bytes.length);
  try {
    const copy = await copyUf2ToDrive({
      uf2,
      drivePath,
      fileName: basename(uf2Path),
      onProgress: (written) => bar?.update(written),
    });
    bar?.stop();
    bar = undefined;
    const flashed = `Flashed ${formatBytes(uf2.imageSize)} to ${board.name} via ${drivePath} in ${(copy.durationMs / 1000).toFixed(1)} s`;

    let portPath = options.port;
    if (portsBefore) {
      say(`Waiting for the ${board.name} to come back as a serial port…`);
      const found = await waitForUf2FirmwarePort(board, {
        known: portsBefore,
        timeoutMs: REENUMERATE_TIMEOUT_MS,
        signal: controller.signal,
      });
      if (!found) {
        const usb = board.usb.find((device) => device.role === 'firmware-serial');
        const usbId = usb ? ` (${formatUsbId(usb)} ${usb.description})` : '';
        throw new BoardfleetError(
          'port-not-found',
          `${flashed}, but no serial port with its firmware's USB id${usbId} appeared within ` +
            `${REENUMERATE_TIMEOUT_MS / 1000} s: is it plugged in by its own USB port? ` +
            `(${uf2FirmataWiring(board)}: pass --port with a USB-serial adapter wired there.)`,
        );
      }
      portPath = found;
    }
    const probe = await probeBoard({ portPath, ledPin: board.ledPin });
    if (probe.status !== 'firmata') {
      throw new BoardfleetError(
        'firmata-no-answer',
        `${flashed}, but it does not answer Firmata on ${portPath}: ${probe.reason} ` +
          `(${uf2FirmataWiring(board)}: is ${portPath} wired there?)`,
      );
    }
    if (options.json) {
      return printJson({
        board: board.id,
        drive: drivePath,
        uf2Path,
        bytesWritten: copy.bytesWritten,
        imageBytes: uf2.imageSize,
        durationMs: Math.round(copy.durationMs),
        portPath,
        firmware: probe.firmware,
      });
    }
    process.stdout.write(
      `${flashed}; ${probe.firmware.name} ${probe.firmware.version} answers on ${portPath}\n`,
    );
  } finally {
    process.off('SIGINT', abort);
    bar?.stop();
  }
}

/** A .uf2 file as it is, or a recipe built for the board first. */
async function firmwareUf2Path(
  target: string,
  board: Uf2Board,
  say: (line: string) => void,
): Promise<string> {
  if (extname(target).toLowerCase() === '.uf2') return target;
  say(`Building ${target} for ${board.id}…`);
  return (await buildUf2Firmware({ recipe: target, board: board.id, onStep: (step) => say(`  ${step}…`) }))
    .uf2Path;
}
