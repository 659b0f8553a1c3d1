import type { Readable } from 'node:stream';
import { Inject, Injectable, Optional } from '@nestjs/common';
import { type Artifact, type ArtifactUpload, artifactUploadQuery } from '../../protocol/api/artifacts.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { type ArtifactManifest, canonicalManifest } from '../../protocol/manifest.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { invalidRequest, notFound } from '../common/errors.ts';
import { generateId } from '../common/secrets.ts';
import { parseBody } from '../common/zod-body.ts';
import { assertKnownBoards, knownArtifactBoards } from './artifact-boards.ts';
import { type ArtifactRecord, ArtifactRepository } from './artifact.repository.ts';
import { type BlobRange, BlobStore } from './blob-store.ts';
import { ChunkIndexService } from './chunk-index.service.ts';
import { SigningKeyRepository } from './signing-key.repository.ts';

@Injectable()
export class ArtifactService {
  private readonly knownBoards = knownArtifactBoards();

  constructor(
    @Inject(ArtifactRepository) private readonly artifacts: ArtifactRepository,
    @Inject(BlobStore) private readonly blobs: BlobStore,
    @Inject(SigningKeyRepository) private readonly signingKey: SigningKeyRepository,
    @Inject(CLOCK) private readonly clock: Clock,
    // Absent only where a test builds the service for another module's sake: nothing is chunked.
    @Optional() @Inject(ChunkIndexService) private readonly chunkIndexes: ChunkIndexService | null = null,
  ) {}

  parseUpload(metadata: unknown): ArtifactUpload {
    const upload = parseBody(artifactUploadQuery, metadata);
    assertKnownBoards(upload.boards, this.knownBoards);
    return upload;
  }

  /**
   * Stores the body (verified against the declared sha256 and size), records a signed manifest,
   * and cuts a deployable artifact into chunks for delta updates. Uploading the same name,
   * version and content again returns the existing artifact (chunking it if it has no index yet).
   */
  async upload(
    upload: ArtifactUpload,
    body: Readable,
  ): Promise<{ artifact: ArtifactRecord; created: boolean }> {
    const existing = await this.artifacts.findByNameVersion(upload.name, upload.version);
    if (existing && existing.sha256 !== upload.sha256) {
      body.resume();
      throw new BoardfleetError(
        'conflict',
        `${upload.name} ${upload.version} already exists with different content (sha256 ${existing.sha256}); publish a new version`,
      );
    }
    await this.blobs.write(body, { sha256: upload.sha256, size: upload.size });
    if (existing) {
      await this.chunkIndexes?.indexArtifact(existing);
      return { artifact: existing, created: false };
    }
    const manifest: ArtifactManifest = {
      schemaVersion: 1,
      name: upload.name,
      version: upload.version,
      kind: upload.kind,
      boards: upload.boards,
      sha256: upload.sha256,
      size: upload.size,
      createdAt: this.clock.now(),
    };
    const manifestText = canonicalManifest(manifest);
    // The schema version lives in the signed text only: the answer matches the record read back later.
    const { schemaVersion: _signedOnly, ...fields } = manifest;
    const artifact: ArtifactRecord = {
      id: generateId('art'),
      ...fields,
      manifest: manifestText,
      signature: this.signingKey.sign(manifestText),
    };
    await this.artifacts.insert(artifact);
    await this.chunkIndexes?.indexArtifact(artifact);
    return { artifact, created: true };
  }

  async getOrThrow(id: string): Promise<ArtifactRecord> {
    const artifact = await this.artifacts.get(id);
    if (!artifact) throw notFound(`artifact ${id}`);
    return artifact;
  }

  async list(filter: { name?: string; kind?: string; limit: number; offset: number }): Promise<Artifact[]> {
    return this.describe(await this.artifacts.list(filter));
  }

  /** Artifacts as the API answers them: with what their chunk indexes say. */
  async describe(artifacts: ArtifactRecord[]): Promise<Artifact[]> {
    const chunks = (await this.chunkIndexes?.summaries(artifacts)) ?? new Map();
    return artifacts.map((artifact) => ({ ...artifact, chunks: chunks.get(artifact.id) ?? null }));
  }

  /** The artifact's content, or `range` of it; refused when the store has lost it. */
  async readContent(artifact: ArtifactRecord, range?: BlobRange): Promise<Readable> {
    try {
      return await this.blobs.read(artifact.sha256, range);
    } catch (error) {
      if (error instanceof BoardfleetError && error.code === 'not-found')
        throw invalidRequest(`the content of artifact ${artifact.id} is missing from the store`);
      throw error;
    }
  }

  get publicKeyPem(): string {
    return this.signingKey.publicKeyPem;
  }
}
