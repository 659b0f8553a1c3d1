import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { configHash } from '../../protocol/device-config-hash.ts';
import type { DesiredConfig } from '../../protocol/device-config.ts';
import { readJson, writeJsonAtomically } from '../../lib/atomic-file.ts';

interface StoredConfig {
  schemaVersion: 1;
  variables: Record<string, string>;
}

/**
 * The configuration variables the device applies, from its desired state, kept in
 * `device-config.json` so a restarted agent starts its apps with them before the broker answers.
 * Emits `changed` when a desired state brings a different set; the hash (recomputed here, never
 * taken from the message) is what the inventory reports as applied.
 */
export class DeviceConfigStore extends EventEmitter<{ changed: [Readonly<Record<string, string>>] }> {
  private readonly path: string;
  private current: Record<string, string>;
  private currentHash: string;

  constructor(dataDir: string) {
    super();
    this.path = join(dataDir, 'device-config.json');
    this.current = readJson<StoredConfig>(this.path)?.variables ?? {};
    this.currentHash = configHash(this.current);
  }

  get variables(): Readonly<Record<string, string>> {
    return this.current;
  }

  get hash(): string {
    return this.currentHash;
  }

  /** Takes a desired state's config (absent: the server sets none); true when it changed anything. */
  apply(config: DesiredConfig | undefined): boolean {
    const variables = config?.variables ?? {};
    const hash = configHash(variables);
    if (hash === this.currentHash) return false;
    writeJsonAtomically(this.path, { schemaVersion: 1, variables } satisfies StoredConfig);
    this.current = { ...variables };
    this.currentHash = hash;
    this.emit('changed', this.current);
    return true;
  }
}

/**
 * What the inventory reports as applied: a new configuration counts once whatever uses it
 * restarted with it (the app), one change at a time; on a device without apps, at once. A failed
 * restart reports nothing: the server keeps showing the config as pending.
 */
export class AppliedConfig {
  private appliedHash: string;
  private work: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: DeviceConfigStore,
    private readonly options: {
      /** Restarts what uses the variables (it reads them from the store as it starts). */
      restart: () => Promise<void>;
      /** Called once a new hash counts as applied (the agent sends its inventory again). */
      applied: () => void;
      logger: Pick<Logger, 'info' | 'warn'>;
    },
  ) {
    // An agent starting up starts its app with the stored variables.
    this.appliedHash = store.hash;
    store.on('changed', () => this.take());
  }

  get hash(): string {
    return this.appliedHash;
  }

  private take(): void {
    this.work = this.work.then(async () => {
      // Taken before the restart: a change arriving meanwhile is taken by the next turn.
      const hash = this.store.hash;
      if (hash === this.appliedHash) return;
      try {
        await this.options.restart();
      } catch (error) {
        this.options.logger.warn({ err: error }, 'the app did not restart with the new configuration');
        return;
      }
      this.appliedHash = hash;
      this.options.logger.info({ configHash: hash }, 'configuration applied');
      this.options.applied();
    });
  }
}
