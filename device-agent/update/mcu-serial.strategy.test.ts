import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getUf2Board } from '../../boards/board-catalogue.ts';
import { encodeUf2, uf2TargetOf } from '../../lib/uf2.ts';
import { type AttachedBoardAccess, serialAttachedBoard } from '../../mcu/attached-board.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import { McuSerialStrategy } from './mcu-serial.strategy.ts';

const pico = getUf2Board('pico');
/** No board answers here: the probe fails as it would with the Pico unplugged. */
const NO_BOARD_PORT = '/dev/ttyBOARDFLEET-no-board';

function manifest(version: string): ArtifactManifest {
  return {
    schemaVersion: 1,
    name: 'firmata',
    version,
    kind: 'mcu-firmware',
    boards: ['pico'],
    sha256: '0'.repeat(64),
    size: 0,
    createdAt: 0,
  };
}

/** A firmware per version, told apart by its bytes. */
function uf2Of(version: string): Uint8Array {
  const image = Uint8Array.from({ length: 3000 }, (_, index) => (index + version.charCodeAt(0)) & 0xff);
  return encodeUf2(image, uf2TargetOf(pico));
}

describe('the mcu-serial strategy with a UF2 board (the Pico)', () => {
  let directory: string;
  /** A plain directory that stands for the mounted BOOTSEL drive, listed in a mount table as one. */
  let bootselDriveStandIn: string;
  let mountInfoPath: string;

  async function artifact(version: string): Promise<string> {
    const path = join(directory, 'downloads', `firmata-${version}`);
    await mkdir(join(directory, 'downloads'), { recursive: true });
    await writeFile(path, uf2Of(version));
    return path;
  }

  async function mountTable(withDrive: boolean): Promise<void> {
    await writeFile(
      mountInfoPath,
      '22 1 0:21 / /proc rw - proc proc rw\n' +
        (withDrive ? `40 26 8:17 / ${bootselDriveStandIn} rw,nosuid - vfat /dev/sdb1 rw\n` : ''),
    );
  }

  function strategy(): McuSerialStrategy {
    return new McuSerialStrategy(
      join(directory, 'mcu'),
      serialAttachedBoard('pico', NO_BOARD_PORT, { mountInfoPath }),
    );
  }

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'mcu-serial-uf2-'));
    bootselDriveStandIn = join(directory, 'media', 'RPI-RP2');
    await mkdir(bootselDriveStandIn, { recursive: true });
    await writeFile(join(bootselDriveStandIn, 'INFO_UF2.TXT'), 'UF2 Bootloader v3.0\nBoard-ID: RPI-RP2\n');
    mountInfoPath = join(directory, 'mountinfo');
    await mountTable(true);
  });

  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('copies each release onto the BOOTSEL drive, and the known-good UF2 back when the new one does not answer', async () => {
    const firmware = strategy();
    await firmware.install(await artifact('1.0.0'), manifest('1.0.0'), new AbortController().signal);
    expect(await readFile(join(bootselDriveStandIn, 'firmata-1.0.0.uf2'))).toEqual(
      Buffer.from(uf2Of('1.0.0')),
    );
    await firmware.commit(manifest('1.0.0'));
    const knownGood = JSON.parse(await readFile(join(directory, 'mcu', 'known-good.json'), 'utf8'));
    expect(knownGood).toEqual({
      schemaVersion: 1,
      artifact: 'firmata',
      version: '1.0.0',
      firmwareFile: join(directory, 'mcu', 'releases', 'firmata-1.0.0.uf2'),
    });

    await firmware.install(await artifact('2.0.0'), manifest('2.0.0'), new AbortController().signal);
    expect(await readFile(join(bootselDriveStandIn, 'firmata-2.0.0.uf2'))).toEqual(
      Buffer.from(uf2Of('2.0.0')),
    );
    const health = await firmware.healthCheck();
    expect(health).toMatchObject({ healthy: false, reason: expect.stringContaining(NO_BOARD_PORT) });
    expect(firmware.describe()).toEqual({
      port: NO_BOARD_PORT,
      board: 'pico',
      firmware: null,
      firmwareVersion: null,
    });

    await rm(join(bootselDriveStandIn, 'firmata-1.0.0.uf2'));
    await firmware.rollback({ artifact: 'firmata', version: '1.0.0' });
    expect(await readFile(join(bootselDriveStandIn, 'firmata-1.0.0.uf2'))).toEqual(
      Buffer.from(uf2Of('1.0.0')),
    );
  });

  it('fails with "needs BOOTSEL" when no RPI-RP2 drive is mounted', async () => {
    await mountTable(false);
    await expect(
      strategy().install(await artifact('1.0.0'), manifest('1.0.0'), new AbortController().signal),
    ).rejects.toMatchObject({
      code: 'needs-bootsel',
      message: `The pico on ${NO_BOARD_PORT} needs BOOTSEL: no RPI-RP2 drive is mounted (hold BOOTSEL and plug it in)`,
    });
  });

  it('refuses a UF2 cut short before anything reaches the drive', async () => {
    const path = await artifact('1.0.0');
    await writeFile(path, uf2Of('1.0.0').subarray(512));
    await expect(
      strategy().install(path, manifest('1.0.0'), new AbortController().signal),
    ).rejects.toMatchObject({ code: 'uf2-invalid' });
    expect(await readFile(join(bootselDriveStandIn, 'INFO_UF2.TXT'), 'utf8')).toContain('RPI-RP2');
    await expect(readFile(join(bootselDriveStandIn, 'firmata-1.0.0.uf2'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});

describe('the mcu-serial strategy with a known-good.json written before UF2 boards', () => {
  let directory: string;

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'mcu-serial-avr-'));
  });

  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('flashes back the hexFile it names', async () => {
    const hexFile = join(directory, 'mcu', 'releases', 'blink-1.0.0.hex');
    await mkdir(join(directory, 'mcu', 'releases'), { recursive: true });
    await writeFile(hexFile, ':00000001FF\n');
    await writeFile(
      join(directory, 'mcu', 'known-good.json'),
      JSON.stringify({ schemaVersion: 1, artifact: 'blink', version: '1.0.0', hexFile }),
    );
    const flashed: string[] = [];
    // Records what the strategy asks of the board: the file it reads back is what is under test.
    const uno: AttachedBoardAccess = {
      ...serialAttachedBoard('uno', NO_BOARD_PORT),
      flash: async (path) => {
        flashed.push(path);
      },
    };
    await new McuSerialStrategy(join(directory, 'mcu'), uno).rollback(null);
    expect(flashed).toEqual([hexFile]);
  });
});
