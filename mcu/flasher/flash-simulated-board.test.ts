import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBoard } from '../../boards/board-catalogue.ts';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import { probeBoard } from '../probe/probe-board.ts';
import { startSimulatedBoard, type SimulatedBoard } from '../simulator/simulated-board.ts';
import { flashBoard } from './flash-board.ts';
import { loadHexFile } from './intel-hex.ts';

// Integration: the real optiboot on a simavr Uno behind a pty, opened through serialport.
describe('flashing a simulated Uno running the real optiboot', () => {
  let workDir: string;
  let board: SimulatedBoard;
  let hexPath: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'boardfleet-flash-sim-'));
    hexPath = (await buildFirmware({ recipe: 'firmata', board: 'uno', outDir: join(workDir, 'firmata') }))
      .hexPath;
    board = await startSimulatedBoard({ board: 'uno', stateDir: join(workDir, 'bench') });
  });

  afterAll(async () => {
    await board?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('writes and verifies the Firmata build, then the sketch runs', async () => {
    const result = await flashBoard({ hexPath, board: 'uno', portPath: board.portPath });
    const image = await loadHexFile(hexPath, getBoard(board.board.id));
    expect(result).toMatchObject({
      board: 'uno',
      protocol: 'stk500v1',
      signature: '1e 95 0f',
    });
    expect(result.bytesWritten).toBe(Math.ceil(image.bytes.length / 128) * 128);
    expect(result.bytesVerified).toBe(result.bytesWritten);
    console.info(
      `flashed ${result.bytesWritten} bytes in ${(result.durationMs / 1000).toFixed(2)} s (${Math.round(result.bytesPerSecond)} B/s)`,
    );
    const probe = await probeBoard({ portPath: board.portPath, timeoutMs: 10_000 });
    expect(probe).toMatchObject({ status: 'firmata', firmware: { name: 'BoardfleetFirmata' } });
  });

  it('flashes again over a running sketch: opening the port resets the board into optiboot', async () => {
    const again = await flashBoard({ hexPath, board: 'uno', portPath: board.portPath });
    expect(again.bytesVerified).toBe(again.bytesWritten);
  });

  it('catches by read-back a page the board stored wrong, naming its address; the next flash mends it', async () => {
    await expectCorruptPageCaught(board, hexPath, 0x0100);
  });

  it('refuses to arm the fault inside the bootloader, which a real chip fuse-protects', async () => {
    await expect(board.corruptNextPageWrite(0x7e00)).rejects.toMatchObject({
      code: 'bench-board-command',
      message: 'corrupt-next-page wants an application flash address below 0x7e00, not 0x7e00',
    });
  });
});

// Integration: the real STK500v2 ("wiring") bootloader on a simavr Mega 2560, end to end.
describe('flashing a simulated Mega 2560 running the real STK500v2 bootloader', () => {
  let workDir: string;
  let board: SimulatedBoard;
  let hexPath: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'boardfleet-flash-mega-'));
    hexPath = (
      await buildFirmware({ recipe: 'firmata', board: 'mega2560', outDir: join(workDir, 'firmata') })
    ).hexPath;
    board = await startSimulatedBoard({ board: 'mega2560', stateDir: join(workDir, 'bench') });
  });

  afterAll(async () => {
    await board?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('writes and verifies the Firmata build, then the sketch runs', async () => {
    const result = await flashBoard({ hexPath, board: 'mega2560', portPath: board.portPath });
    expect(result).toMatchObject({ board: 'mega2560', protocol: 'stk500v2', signature: '1e 98 01' });
    expect(result.bytesVerified).toBe(result.bytesWritten);
    const probe = await probeBoard({ portPath: board.portPath, timeoutMs: 10_000 });
    expect(probe).toMatchObject({ status: 'firmata', firmware: { name: 'BoardfleetFirmata' } });
  });

  it('catches by read-back a page the board stored wrong, naming its address; the next flash mends it', async () => {
    await expectCorruptPageCaught(board, hexPath, 0x0200);
  });
});

/** Arms the harness fault (one byte of the page at `pageAddress` flipped as it is written). */
async function expectCorruptPageCaught(board: SimulatedBoard, hexPath: string, pageAddress: number) {
  await board.corruptNextPageWrite(pageAddress);
  const address = `0x${pageAddress.toString(16).toUpperCase().padStart(4, '0')}`;
  const failed = flashBoard({ hexPath, board: board.board.id, portPath: board.portPath });
  await expect(failed).rejects.toMatchObject({
    code: 'verify-failed',
    message: expect.stringMatching(
      new RegExp(
        `^Verify failed on ${board.portPath}: the page at ${address} \\(page \\d+ of \\d+\\) reads 0x[0-9A-F]{2} at ${address}, `,
      ),
    ),
  });
  const again = await flashBoard({ hexPath, board: board.board.id, portPath: board.portPath });
  expect(again.bytesVerified).toBe(again.bytesWritten);
}
