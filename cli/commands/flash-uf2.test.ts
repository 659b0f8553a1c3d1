import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { getUf2Board } from '../../boards/board-catalogue.ts';
import { buildUf2Firmware } from '../../builder/mcu/rp2040/build-uf2-firmware.ts';
import { decodeUf2, uf2TargetOf } from '../../lib/uf2.ts';
import { FatImageBootselDrive } from '../../mcu/flasher/doubles/fat-image-bootsel-drive.ts';
import { type SimulatedBoard, startSimulatedBoard } from '../../mcu/simulator/simulated-board.ts';

const CLI = new URL('../boardfleet.js', import.meta.url).pathname;
const pico = getUf2Board('pico');
/** The CLI starts through tsx, builds, copies and probes on a machine shared with other tests. */
const FLASH_TIMEOUT_MS = 300_000;

function boardfleet(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, timeout: FLASH_TIMEOUT_MS }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

describe('boardfleet flash --board pico, onto a FAT image standing for the BOOTSEL drive', () => {
  let directory: string;
  let drive: FatImageBootselDrive;
  let bench: SimulatedBoard | undefined;
  /** Our Firmata for the Pico, built as the CLI builds it (reproducible, so the same bytes). */
  let builtUf2: Buffer;
  let builtUf2Path: string;
  let buildDirectory: string;

  beforeAll(async () => {
    buildDirectory = await mkdtemp(join(tmpdir(), 'flash-uf2-build-'));
    builtUf2Path = (await buildUf2Firmware({ recipe: 'firmata', board: 'pico', outDir: buildDirectory }))
      .uf2Path;
    builtUf2 = await readFile(builtUf2Path);
  }, FLASH_TIMEOUT_MS);

  afterAll(async () => {
    if (buildDirectory) await rm(buildDirectory, { recursive: true, force: true });
  });

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'flash-uf2-'));
    drive = await FatImageBootselDrive.create({ directory, board: pico });
    await drive.mount();
  });

  afterEach(async () => {
    try {
      await bench?.stop();
      bench = undefined;
      await drive.unmount();
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it(
    'builds firmata, copies it onto the drive and finds BoardfleetFirmata answering on --port',
    async () => {
      // The bench Pico stands for the board once the boot ROM has rebooted it into what was copied.
      bench = await startSimulatedBoard({
        board: 'pico',
        firmwareUf2: builtUf2Path,
        stateDir: join(directory, 'bench'),
      });
      const result = await boardfleet(
        ['flash', 'firmata', '--board', 'pico', '--drive', drive.mountPoint, '--port', bench.portPath],
        directory,
      );
      expect(result, result.stderr).toMatchObject({ code: 0 });
      expect(result.stdout).toMatch(
        new RegExp(
          `^Flashed \\d+(\\.\\d)? KiB to Raspberry Pi Pico via ${drive.mountPoint} in \\d+\\.\\d s; ` +
            `BoardfleetFirmata 1\\.0 answers on ${bench.portPath}\\n$`,
        ),
      );

      await drive.unmount();
      const onTheDrive = await drive.readBack('firmata.uf2');
      expect(Buffer.compare(onTheDrive, builtUf2)).toBe(0);
      expect(decodeUf2(onTheDrive, uf2TargetOf(pico))).toMatchObject({
        ok: true,
        address: pico.flash.address,
      });
    },
    FLASH_TIMEOUT_MS,
  );

  it(
    'says where Firmata is wired when no serial port comes up after the copy',
    async () => {
      const result = await boardfleet(
        ['flash', builtUf2Path, '--board', 'pico', '--drive', drive.mountPoint],
        directory,
      );
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        new RegExp(
          `Flashed \\d+(\\.\\d)? KiB to Raspberry Pi Pico via ${drive.mountPoint} in \\d+\\.\\d s, but`,
        ),
      );
      expect(result.stderr).toContain(
        "but no serial port with its firmware's USB id (2e8a:000a BoardfleetFirmata USB serial) appeared within 15 s: " +
          'is it plugged in by its own USB port? (our firmware also talks Firmata on UART0 (GP0 TX, GP1 RX) at 57600 baud: ' +
          'pass --port with a USB-serial adapter wired there.)',
      );
      await drive.unmount();
      expect(Buffer.compare(await drive.readBack('firmata.uf2'), builtUf2)).toBe(0);
    },
    FLASH_TIMEOUT_MS,
  );

  it(
    'refuses --all for a board flashed through its drive',
    async () => {
      const result = await boardfleet(['flash', builtUf2Path, '--board', 'pico', '--all'], directory);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('--all is for boards flashed over serial');
    },
    FLASH_TIMEOUT_MS,
  );
});

describe('boardfleet boards', () => {
  it(
    'lists the Pico in its own table, upload through its UF2 drive, and in --json',
    async () => {
      const { stdout } = await boardfleet(['boards'], tmpdir());
      expect(stdout).toMatch(
        /^pico\s+Raspberry Pi Pico\s+rp2040\s+2\.0 MiB\s+264\.0 KiB\s+UF2 drive RPI-RP2$/m,
      );
      const { stdout: json } = await boardfleet(['boards', '--json'], tmpdir());
      expect(JSON.parse(json)).toContainEqual(expect.objectContaining({ id: 'pico', family: 'uf2' }));
    },
    FLASH_TIMEOUT_MS,
  );
});
