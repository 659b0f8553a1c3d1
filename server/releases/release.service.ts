import { Inject, Injectable } from '@nestjs/common';
import type { CreateRelease } from '../../protocol/api/releases.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { isDeployableKind } from '../../protocol/manifest.ts';
import { ArtifactRepository } from '../artifacts/artifact.repository.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { invalidRequest, notFound } from '../common/errors.ts';
import { generateId } from '../common/secrets.ts';
import { type ReleaseRecord, ReleaseRepository } from './release.repository.ts';

@Injectable()
export class ReleaseService {
  constructor(
    @Inject(ReleaseRepository) private readonly releases: ReleaseRepository,
    @Inject(ArtifactRepository) private readonly artifacts: ArtifactRepository,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  async create(input: CreateRelease): Promise<ReleaseRecord> {
    if (await this.releases.findByName(input.name))
      throw new BoardfleetError('conflict', `release ${input.name} already exists`);
    const problems: string[] = [];
    for (const [board, artifactId] of Object.entries(input.artifacts)) {
      const artifact = await this.artifacts.get(artifactId);
      if (!artifact) problems.push(`${board}: artifact ${artifactId} not found`);
      else if (!isDeployableKind(artifact.kind)) {
        problems.push(
          `${board}: artifact ${artifact.name} ${artifact.version} is a ${artifact.kind}, which no device installs (use its linux-image update payload)`,
        );
      } else if (board !== '*' && !artifact.boards.includes(board)) {
        problems.push(
          `${board}: artifact ${artifact.name} ${artifact.version} is built for ${artifact.boards.join(', ')}, not ${board}`,
        );
      }
    }
    if (problems.length > 0)
      throw invalidRequest(`cannot create release ${input.name}: ${problems.join('; ')}`);
    const release: ReleaseRecord = {
      id: generateId('rel'),
      name: input.name,
      createdAt: this.clock.now(),
      artifacts: input.artifacts,
    };
    await this.releases.insert(release);
    return release;
  }

  async getOrThrow(idOrName: string): Promise<ReleaseRecord> {
    const release = (await this.releases.get(idOrName)) ?? (await this.releases.findByName(idOrName));
    if (!release) throw notFound(`release ${idOrName}`);
    return release;
  }

  /** Whether the release carries firmware for an attached board: with an app, it is a composite release. */
  async carriesFirmware(release: ReleaseRecord): Promise<boolean> {
    const artifacts = await Promise.all(
      [...new Set(Object.values(release.artifacts))].map((id) => this.artifacts.get(id)),
    );
    return artifacts.some((artifact) => artifact?.kind === 'mcu-firmware');
  }

  /** The artifact a board gets from a release: its own entry, else the `*` entry if that artifact lists the board. */
  async artifactFor(release: ReleaseRecord, board: string) {
    const exact = release.artifacts[board];
    if (exact) return this.artifacts.get(exact);
    const wildcard = release.artifacts['*'];
    if (!wildcard) return null;
    const artifact = await this.artifacts.get(wildcard);
    return artifact?.boards.includes(board) ? artifact : null;
  }

  list(limit: number, offset: number) {
    return this.releases.list(limit, offset);
  }
}
