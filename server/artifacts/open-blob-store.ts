import { join } from 'node:path';
import type { ArtifactStoreConfig } from '../config/config.ts';
import type { BlobStore } from './blob-store.ts';
import { FolderBlobStore } from './blob-store.repository.ts';

/** The configured artifact store; an S3 store only once its bucket has answered. */
export async function openBlobStore(store: ArtifactStoreConfig, dataDir: string): Promise<BlobStore> {
  if (store.kind === 'folder') return new FolderBlobStore(dataDir);
  // Loaded only when chosen: the AWS SDK would slow every other start.
  const { S3BlobStore } = await import('./s3-blob-store.repository.ts');
  return S3BlobStore.open({ ...store, incomingDir: join(dataDir, 'artifacts', 'incoming') });
}
