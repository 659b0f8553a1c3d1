import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Uf2Board } from '../../../boards/board-catalogue.ts';
import { decodeUf2, uf2TargetOf } from '../../../lib/uf2.ts';
import { BoardfleetError } from '../../../protocol/errors.ts';
import { buildPtyRelay } from '../harness-build.ts';
import type { HostTools } from '../host-tools.repository.ts';

const BENCH_PROCESS = fileURLToPath(new URL('./pico-bench-process.ts', import.meta.url));

/** The flash image a bench Pico keeps across restarts, as the Uno keeps `flash-<mcu>.bin`. */
export const picoFlashFile = (board: Uf2Board, stateDir: string) => join(stateDir, `flash-${board.mcu}.bin`);

/**
 * What to spawn for a bench Pico in `stateDir`: a Node process running rp2040js
 * (`pico-bench-process.ts`, through tsx, which the CLI's compiled build also ships with), given
 * the pty relay built for this host. A `firmwareUf2` is written into the flash image first.
 */
export async function preparePicoBench(options: {
  board: Uf2Board;
  stateDir: string;
  firmwareUf2?: string;
  cacheDir: string;
  tools: HostTools;
}): Promise<{ command: string; args: string[] }> {
  const { board, stateDir } = options;
  const relay = await buildPtyRelay({ cacheDir: options.cacheDir, tools: options.tools });
  await mkdir(stateDir, { recursive: true });
  const flashFile = picoFlashFile(board, stateDir);
  if (options.firmwareUf2) await writeUf2IntoFlash(board, options.firmwareUf2, flashFile);
  const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return {
    command: process.execPath,
    args: [
      '--import',
      tsxLoader,
      BENCH_PROCESS,
      '--state-dir',
      stateDir,
      '--flash-file',
      flashFile,
      '--flash-size',
      String(board.flash.size),
      '--relay',
      relay,
    ],
  };
}

/**
 * As the boot ROM's drive does: each 4 KB sector the UF2 touches is erased and written, the rest
 * of the flash is kept. Written whole (temp file, rename), so a crash leaves one image or the other.
 */
async function writeUf2IntoFlash(board: Uf2Board, uf2Path: string, flashFile: string): Promise<void> {
  const file = await readFile(uf2Path).catch((error: Error) => {
    throw new BoardfleetError('uf2-invalid', `Cannot read the UF2 file ${uf2Path}: ${error.message}`);
  });
  const image = decodeUf2(file, uf2TargetOf(board));
  if (!image.ok) {
    throw new BoardfleetError(
      'uf2-invalid',
      `${uf2Path} is not a UF2 for the ${board.name} (${image.reason}): ${image.detail}`,
    );
  }
  const flash = new Uint8Array(board.flash.size).fill(0xff);
  const saved = await readFile(flashFile).catch(() => undefined);
  if (saved?.length === flash.length) flash.set(saved);
  const offset = image.address - board.flash.address;
  const { sectorSize } = board.flash;
  const firstSector = Math.floor(offset / sectorSize) * sectorSize;
  const endSector = Math.ceil((offset + image.bytes.length) / sectorSize) * sectorSize;
  flash.fill(0xff, firstSector, endSector);
  flash.set(image.bytes, offset);
  await writeFile(`${flashFile}.tmp`, flash, { flush: true });
  await rename(`${flashFile}.tmp`, flashFile);
}
