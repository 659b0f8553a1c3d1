import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
    const image = await loadHexFile(hexPath, board.board);
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
});
