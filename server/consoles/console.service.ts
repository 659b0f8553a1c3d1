import { Inject, Injectable } from '@nestjs/common';
import { artifactName, artifactVersion } from '../../protocol/api/artifacts.ts';
import type { ConsoleSummary } from '../../protocol/api/consoles.ts';
import { CONSOLE_MAX_BYTES } from '../../protocol/device-console.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { invalidRequest, notFound } from '../common/errors.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import { ConsoleRepository, type StoredConsole } from './console.repository.ts';

/** Consoles kept per device (the most recently updated); older versions' captures are dropped. */
export const CONSOLES_KEPT_PER_DEVICE = 20;

@Injectable()
export class ConsoleService {
  constructor(
    @Inject(ConsoleRepository) private readonly consoles: ConsoleRepository,
    @Inject(DeviceRepository) private readonly devices: DeviceRepository,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** Consoles are named like the artifacts whose VMs printed them. */
  parseKey(artifact: string, version: string): { artifact: string; version: string } {
    const problems = [
      ['artifact', artifactName.safeParse(artifact)],
      ['version', artifactVersion.safeParse(version)],
    ] as const;
    const messages = problems.flatMap(([field, parsed]) =>
      parsed.success ? [] : [`${field}: ${parsed.error.issues.map((issue) => issue.message).join(', ')}`],
    );
    if (messages.length > 0) throw invalidRequest(`invalid console name: ${messages.join('; ')}`);
    return { artifact, version };
  }

  /**
   * Stores an uploaded console, replacing the earlier upload of the same version. Only the last
   * {@link CONSOLE_MAX_BYTES} are kept (memory stays bounded however long the body is), from the
   * first whole line on when cut.
   */
  async store(
    deviceId: string,
    artifact: string,
    version: string,
    body: AsyncIterable<Buffer>,
  ): Promise<ConsoleSummary> {
    const key = this.parseKey(artifact, version);
    const text = consoleText(await readTail(body, CONSOLE_MAX_BYTES));
    const stored: StoredConsole = {
      ...key,
      text,
      size: Buffer.byteLength(text),
      updatedAt: this.clock.now(),
    };
    await this.consoles.put(deviceId, stored);
    await this.consoles.prune(deviceId, CONSOLES_KEPT_PER_DEVICE);
    return {
      artifact: stored.artifact,
      version: stored.version,
      size: stored.size,
      updatedAt: stored.updatedAt,
    };
  }

  async list(deviceId: string): Promise<ConsoleSummary[]> {
    await this.requireDevice(deviceId);
    return this.consoles.list(deviceId);
  }

  async get(deviceId: string, artifact: string, version: string): Promise<StoredConsole> {
    await this.requireDevice(deviceId);
    const key = this.parseKey(artifact, version);
    const stored = await this.consoles.get(deviceId, key.artifact, key.version);
    if (!stored) throw notFound(`the console of ${key.artifact} ${key.version} on device ${deviceId}`);
    return stored;
  }

  private async requireDevice(deviceId: string): Promise<void> {
    if (!(await this.devices.get(deviceId))) throw notFound(`device ${deviceId}`);
  }
}

/** The last `maxBytes` of a stream, and whether anything before them was dropped. */
async function readTail(
  body: AsyncIterable<Buffer>,
  maxBytes: number,
): Promise<{ tail: Buffer; cut: boolean }> {
  const chunks: Buffer[] = [];
  let held = 0;
  let cut = false;
  for await (const chunk of body) {
    chunks.push(chunk);
    held += chunk.length;
    while (held - (chunks[0]?.length ?? 0) >= maxBytes) {
      held -= (chunks.shift() as Buffer).length;
      cut = true;
    }
  }
  const joined = Buffer.concat(chunks);
  if (joined.length <= maxBytes) return { tail: joined, cut };
  return { tail: joined.subarray(joined.length - maxBytes), cut: true };
}

/**
 * Console bytes as storable text: UTF-8 (invalid bytes become U+FFFD), without NUL characters
 * (PostgreSQL text cannot hold them), starting at a whole line when the front was cut.
 */
function consoleText({ tail, cut }: { tail: Buffer; cut: boolean }): string {
  let text = tail.toString('utf8').replaceAll('\u0000', '');
  if (cut) {
    const firstBreak = text.indexOf('\n');
    if (firstBreak >= 0) text = text.slice(firstBreak + 1);
  }
  return text;
}
