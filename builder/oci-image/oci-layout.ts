import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import * as tar from 'tar';
import { sha256, sha256File } from '../../lib/hash.ts';

const MEDIA_TYPE = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** The run configuration of an image (image-spec config.md, `config`). */
export interface OciRunConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Labels?: Record<string, string>;
}

export interface OciLayoutInput {
  /** The one layer's files, as a folder. */
  rootDir: string;
  config: OciRunConfig;
  /** The image-spec's name (Go's GOARCH): arm64, amd64. */
  architecture: string;
  /** Seconds since 1970: every timestamp inside, so the same inputs give the same bytes. */
  epoch: number;
  /** index.json's `org.opencontainers.image.ref.name`: the tag. */
  refName: string;
  /** A folder to write blobs into (it becomes the layout); the layout tar is written to `outFile`. */
  workDir: string;
  outFile: string;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** Every path under `dir`, parents first, siblings in code-unit order: the tar's fixed order. */
async function sortedPaths(dir: string, inside = ''): Promise<string[]> {
  const names = (await readdir(join(dir, inside))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const paths: string[] = [];
  for (const name of names) {
    const path = inside ? `${inside}/${name}` : name;
    paths.push(path);
    if ((await lstat(join(dir, path))).isDirectory()) paths.push(...(await sortedPaths(dir, path)));
  }
  return paths;
}

/**
 * A tar of `paths` under `cwd` that depends on nothing but their names, modes, contents and
 * `epoch`: no owners, no atime or ctime, one mtime (the portable ustar/pax form).
 */
async function deterministicTar(cwd: string, paths: string[], file: string, epoch: number): Promise<void> {
  await tar.c({ cwd, file, portable: true, noDirRecurse: true, mtime: new Date(epoch * 1000) }, paths);
}

/** Stores `content` as a blob of the layout, named by its sha256. */
async function writeBlob(blobs: string, mediaType: string, content: Buffer): Promise<Descriptor> {
  const digest = sha256(content);
  await writeFile(join(blobs, digest), content);
  return { mediaType, digest: `sha256:${digest}`, size: content.length };
}

/**
 * Writes an OCI image layout holding one image of one layer (image-spec image-layout.md) as a
 * tar at `outFile`. The same folder, configuration and epoch give the same bytes: entries sorted,
 * owners left out, one timestamp, gzip without a name or time in its header.
 */
export async function writeOciLayout(input: OciLayoutInput): Promise<{ digest: string }> {
  const layout = join(input.workDir, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  await mkdir(blobs, { recursive: true });

  const layerTar = join(input.workDir, 'layer.tar');
  await deterministicTar(input.rootDir, await sortedPaths(input.rootDir), layerTar, input.epoch);
  const layerGzip = join(input.workDir, 'layer.tar.gz');
  await pipeline(createReadStream(layerTar), createGzip({ level: 9 }), createWriteStream(layerGzip));
  const layerDigest = await sha256File(layerGzip);
  await rename(layerGzip, join(blobs, layerDigest));
  const layer: Descriptor = {
    mediaType: MEDIA_TYPE.layer,
    digest: `sha256:${layerDigest}`,
    size: (await lstat(join(blobs, layerDigest))).size,
  };

  const created = new Date(input.epoch * 1000).toISOString();
  const config = await writeBlob(
    blobs,
    MEDIA_TYPE.config,
    Buffer.from(
      JSON.stringify({
        created,
        architecture: input.architecture,
        os: 'linux',
        config: input.config,
        rootfs: { type: 'layers', diff_ids: [`sha256:${await sha256File(layerTar)}`] },
        history: [{ created, created_by: 'boardfleet build' }],
      }),
    ),
  );
  const manifest = await writeBlob(
    blobs,
    MEDIA_TYPE.manifest,
    Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE.manifest, config, layers: [layer] }),
    ),
  );
  await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE.index,
      manifests: [
        {
          ...manifest,
          platform: { architecture: input.architecture, os: 'linux' },
          annotations: { 'org.opencontainers.image.ref.name': input.refName },
        },
      ],
    }),
  );
  // oci-layout and index.json first: a reader knows what it holds before the blobs.
  const blobPaths = (await sortedPaths(layout)).filter((path) => path.startsWith('blobs'));
  await deterministicTar(layout, ['oci-layout', 'index.json', ...blobPaths], input.outFile, input.epoch);
  return { digest: manifest.digest };
}
