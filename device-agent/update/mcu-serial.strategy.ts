import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AttachedBoardAccess } from '../../mcu/attached-board.ts';
import type { ProbeResult } from '../../mcu/probe/probe-board.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import type { Inventory } from '../../protocol/schemas.ts';
import { readJson, writeJsonAtomically } from '../../lib/atomic-file.ts';
import type { UpdateStrategy } from './update-strategy.ts';

/**
 * The committed firmware, kept to flash back. `firmwareFile` came with UF2 boards; `hexFile` is
 * still written for AVR boards, so an older agent reading the file finds what it expects.
 */
interface KnownGood {
  schemaVersion: 1;
  artifact: string;
  version: string;
  firmwareFile?: string;
  hexFile?: string;
}

/** The firmware a known-good record names, whichever agent wrote it. */
const knownGoodFile = (knownGood: KnownGood | null): string | undefined =>
  knownGood ? (knownGood.firmwareFile ?? knownGood.hexFile) : undefined;

/** How often a re-flash is tried before the rollback gives up (a board mid-reset can miss one). */
const FLASH_ATTEMPTS = 3;

/**
 * Firmware for a microcontroller board attached to the device: an Arduino-class board flashed
 * over USB serial (.hex), or a UF2 board (the Pico) flashed through its BOOTSEL drive (.uf2).
 * Neither checks signatures itself, so the agent verifies the file (as for every artifact)
 * before flashing it. A new firmware counts as healthy when the board answers the Firmata probe
 * and passes its LED self-test; the last committed firmware is kept, and flashed back when a new
 * one fails or when the board stops answering at agent start.
 */
export class McuSerialStrategy implements UpdateStrategy {
  readonly kind = 'mcu-serial';
  private lastProbe: ProbeResult | null = null;

  constructor(
    private readonly root: string,
    private readonly access: AttachedBoardAccess,
    private readonly log: (message: string) => void = () => {},
  ) {
    mkdirSync(join(root, 'releases'), { recursive: true });
  }

  private firmwareFile(release: { name?: string; artifact?: string; version: string }): string {
    return join(
      this.root,
      'releases',
      `${release.name ?? release.artifact}-${release.version}${this.access.firmwareExtension}`,
    );
  }

  private get knownGoodPath(): string {
    return join(this.root, 'known-good.json');
  }

  knownGood(): KnownGood | null {
    return readJson<KnownGood>(this.knownGoodPath);
  }

  /** Firmware is tiny: a delta could not save what its chunk index costs, so it comes whole. */
  async seeds(): Promise<[]> {
    return [];
  }

  async install(
    artifactPath: string,
    manifest: ArtifactManifest,
    signal: AbortSignal,
  ): Promise<{ needsReboot: boolean }> {
    if (manifest.kind !== 'mcu-firmware') {
      throw new BoardfleetError(
        'wrong-kind',
        `${manifest.name} ${manifest.version} is ${manifest.kind}, not mcu-firmware`,
      );
    }
    const boardId = this.access.board.id;
    const compatible = manifest.boards.some((board) => board === boardId || board === boardId.split(':')[0]);
    if (!compatible) {
      throw new BoardfleetError(
        'board-mismatch',
        `${manifest.name} ${manifest.version} is built for ${manifest.boards.join(', ')}, but the board on ${this.access.portPath} is ${boardId}`,
      );
    }
    const firmwareFile = this.firmwareFile(manifest);
    if (!existsSync(firmwareFile)) {
      // Renamed into place, so a crash never leaves half a firmware under the release's name.
      copyFileSync(artifactPath, `${firmwareFile}.partial`);
      renameSync(`${firmwareFile}.partial`, firmwareFile);
    }
    this.log(`flashing ${manifest.name} ${manifest.version} onto the ${boardId} on ${this.access.portPath}`);
    await this.access.flash(firmwareFile, signal);
    return { needsReboot: false };
  }

  async healthCheck(): Promise<{ healthy: true } | { healthy: false; reason: string }> {
    const result = await this.probeQuietly();
    if (result.status !== 'firmata')
      return { healthy: false, reason: `board does not answer Firmata: ${result.reason}` };
    if (!result.selfTest.passed) {
      return {
        healthy: false,
        reason: `board answers Firmata but its self-test on pin ${result.selfTest.pin} failed`,
      };
    }
    return { healthy: true };
  }

  async commit(manifest: ArtifactManifest): Promise<void> {
    const firmwareFile = this.firmwareFile(manifest);
    writeJsonAtomically(this.knownGoodPath, {
      schemaVersion: 1,
      artifact: manifest.name,
      version: manifest.version,
      firmwareFile,
      ...(this.access.firmwareExtension === '.hex' ? { hexFile: firmwareFile } : {}),
    } satisfies KnownGood);
    for (const entry of readdirSync(join(this.root, 'releases'))) {
      const path = join(this.root, 'releases', entry);
      if (path !== firmwareFile) rmSync(path, { force: true });
    }
  }

  async rollback(previous: { artifact: string; version: string } | null): Promise<{ needsReboot: boolean }> {
    const knownGood = this.knownGood();
    const firmwareFile =
      previous && existsSync(this.firmwareFile(previous))
        ? this.firmwareFile(previous)
        : knownGoodFile(knownGood);
    if (!firmwareFile || !existsSync(firmwareFile)) {
      throw new BoardfleetError(
        'no-known-good-firmware',
        `No known-good firmware to flash back onto the ${this.access.board.id} on ${this.access.portPath}`,
      );
    }
    await this.flashWithRetries(firmwareFile);
    return { needsReboot: false };
  }

  /** At agent start: a board that no longer answers gets its known-good firmware back. */
  async resume(): Promise<void> {
    const knownGood = this.knownGood();
    const firmwareFile = knownGoodFile(knownGood);
    if (!knownGood || !firmwareFile) return;
    const health = await this.healthCheck();
    if (health.healthy) return;
    this.log(`${health.reason}; flashing back ${knownGood.artifact} ${knownGood.version}`);
    try {
      await this.flashWithRetries(firmwareFile);
    } catch (error) {
      // An unplugged board must not keep the agent from starting; the next deployment tries again.
      this.log(
        `could not flash ${knownGood.artifact} ${knownGood.version} back: ${(error as Error).message}`,
      );
    }
  }

  async stop(): Promise<void> {}

  /** The attached board as the inventory reports it, from the latest probe. */
  describe(): Inventory['attachedBoards'][number] {
    const probe = this.lastProbe;
    return {
      port: this.access.portPath,
      board: this.access.board.id,
      firmware: probe?.status === 'firmata' ? probe.firmware.name : null,
      firmwareVersion: probe?.status === 'firmata' ? probe.firmware.version : null,
    };
  }

  private async probeQuietly(): Promise<ProbeResult> {
    try {
      this.lastProbe = await this.access.probe();
    } catch (error) {
      this.lastProbe = {
        status: 'not-firmata',
        portPath: this.access.portPath,
        bytesReceived: 0,
        reason: (error as Error).message,
      };
    }
    return this.lastProbe;
  }

  private async flashWithRetries(firmwareFile: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.access.flash(firmwareFile);
        return;
      } catch (error) {
        if (attempt >= FLASH_ATTEMPTS) throw error;
        this.log(`flash attempt ${attempt} failed (${(error as Error).message}); trying again`);
      }
    }
  }
}
