import { createHash } from 'node:crypto';
import * as tar from 'tar';
import { z } from 'zod';
import { BoardfleetError } from '../../../protocol/errors.ts';

/** One regular file of an image archive: its size and sha256, and its bytes when small (JSON, say). */
export interface ArchiveFile {
  size: number;
  sha256: string;
  content?: Buffer;
}

/** Every regular file of an image archive by its path (no leading `./`). */
export type ImageArchive = ReadonlyMap<string, ArchiveFile>;

/** What runs: the image configuration's `config` part, the fields the runtime config uses. */
export const imageRunConfigSchema = z.object({
  Entrypoint: z.array(z.string()).nullish(),
  Cmd: z.array(z.string()).nullish(),
  Env: z.array(z.string()).nullish(),
  WorkingDir: z.string().nullish(),
  User: z.string().nullish(),
  ExposedPorts: z.record(z.string(), z.unknown()).nullish(),
});
export type ImageRunConfig = z.infer<typeof imageRunConfigSchema>;

const imageConfigSchema = z.object({
  architecture: z.string(),
  os: z.string(),
  config: imageRunConfigSchema.nullish(),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(z.string()) }),
});

/** An image read from an archive: its configuration and its layers, lowest first. */
export interface OciImage {
  format: 'oci-layout' | 'docker-save';
  architecture: string;
  config: ImageRunConfig;
  /** Paths inside the archive of the layer tars (gzip or plain), in the order they apply. */
  layers: string[];
}

/** Blobs kept in memory by `scanImageArchive`: manifests and configurations are far smaller. */
const KEPT_CONTENT_BYTES = 1024 * 1024;

/**
 * Reads an image archive (a tar, or a gzipped tar) in one pass: the path, size and sha256 of each
 * regular file, and the bytes of the small ones.
 */
export async function scanImageArchive(file: string): Promise<ImageArchive> {
  const files = new Map<string, ArchiveFile>();
  const pending: Promise<void>[] = [];
  try {
    await tar.t({
      file,
      strict: true,
      onReadEntry: (entry) => {
        if (entry.type !== 'File' && entry.type !== 'OldFile') return entry.resume();
        const path = entry.path.replace(/^(\.\/)+/, '');
        const hash = createHash('sha256');
        const chunks: Buffer[] = [];
        const keep = entry.size <= KEPT_CONTENT_BYTES;
        entry.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          if (keep) chunks.push(chunk);
        });
        pending.push(
          new Promise((resolve) =>
            entry.on('end', () => {
              files.set(path, {
                size: entry.size,
                sha256: hash.digest('hex'),
                ...(keep ? { content: Buffer.concat(chunks) } : {}),
              });
              resolve();
            }),
          ),
        );
      },
    });
  } catch (error) {
    throw new BoardfleetError('bad-oci-image', `not a tar archive: ${(error as Error).message}`);
  }
  await Promise.all(pending);
  return files;
}

const descriptorSchema = z.object({
  mediaType: z.string().optional(),
  digest: z.string(),
  size: z.number().int().nonnegative(),
  platform: z.object({ architecture: z.string(), os: z.string() }).optional(),
});
type Descriptor = z.infer<typeof descriptorSchema>;

const indexSchema = z.object({ manifests: z.array(descriptorSchema) });
const manifestSchema = z.object({ config: descriptorSchema, layers: z.array(descriptorSchema) });
const dockerSaveSchema = z
  .array(z.object({ Config: z.string(), Layers: z.array(z.string()) }))
  .min(1, 'lists no image');

const INDEX_MEDIA_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);
/** Layer media types whose tar the agent can read (plain or gzip; zstd is not in Node). */
const READABLE_LAYER =
  /(^application\/vnd\.(oci\.image|docker\.image\.rootfs)\.(layer\.v1\.tar|diff\.tar)(\.gzip|\+gzip)?$)|nondistributable.*tar(\+gzip)?$/;

const fail = (message: string): never => {
  throw new BoardfleetError('bad-oci-image', message);
};

function json(archive: ImageArchive, path: string, what: string): unknown {
  const file = archive.get(path);
  if (!file) return fail(`the image has no ${path} (${what})`);
  if (!file.content) return fail(`${path} (${what}) is too large to be JSON`);
  try {
    return JSON.parse(file.content.toString('utf8'));
  } catch (error) {
    return fail(`${path} (${what}) is not JSON: ${(error as Error).message}`);
  }
}

function parsed<T>(schema: z.ZodType<T>, value: unknown, path: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  return fail(`${path}: ${issue?.path.join('.') || 'top level'}: ${issue?.message}`);
}

/** The archive path of a descriptor's blob, checked against its digest and size. */
function verifiedBlob(archive: ImageArchive, descriptor: Descriptor): string {
  const match = /^sha256:([0-9a-f]{64})$/.exec(descriptor.digest);
  if (!match) return fail(`digest ${descriptor.digest}: only sha256 digests are supported`);
  const path = `blobs/sha256/${match[1]}`;
  const file = archive.get(path);
  if (!file) return fail(`the image has no ${path}`);
  if (file.sha256 !== match[1]) return fail(`${path} does not match its digest (sha256 ${file.sha256})`);
  if (file.size !== descriptor.size)
    return fail(`${path} has ${file.size} bytes, its descriptor says ${descriptor.size}`);
  return path;
}

/** Platforms that are not an image to run: buildx's attestation manifests say unknown/unknown. */
const isRunnable = (descriptor: Descriptor) => descriptor.platform?.architecture !== 'unknown';

/** Follows indexes down to the one image manifest for `architecture` (any, when not given). */
function imageManifest(archive: ImageArchive, index: Descriptor[], architecture?: string): Descriptor {
  const candidates = index.filter(isRunnable);
  const chosen = architecture
    ? (candidates.find((d) => !d.platform || d.platform.architecture === architecture) ??
      fail(
        `the image has no manifest for ${architecture} (it has ${candidates.map((d) => d.platform?.architecture).join(', ') || 'none'})`,
      ))
    : (candidates[0] ?? fail('index.json lists no image manifest'));
  if (!INDEX_MEDIA_TYPES.has(chosen.mediaType ?? '')) return chosen;
  const path = verifiedBlob(archive, chosen);
  return imageManifest(
    archive,
    parsed(indexSchema, json(archive, path, 'an index'), path).manifests,
    architecture,
  );
}

function imageConfig(archive: ImageArchive, path: string) {
  return parsed(imageConfigSchema, json(archive, path, 'the image configuration'), path);
}

function fromOciLayout(archive: ImageArchive, architecture?: string): OciImage {
  const index = parsed(indexSchema, json(archive, 'index.json', 'the image index'), 'index.json');
  const manifestDescriptor = imageManifest(archive, index.manifests, architecture);
  const manifestPath = verifiedBlob(archive, manifestDescriptor);
  const manifest = parsed(manifestSchema, json(archive, manifestPath, 'the image manifest'), manifestPath);
  const config = imageConfig(archive, verifiedBlob(archive, manifest.config));
  const layers = manifest.layers.map((layer) => {
    if (layer.mediaType && !READABLE_LAYER.test(layer.mediaType))
      fail(`layer ${layer.digest} is ${layer.mediaType}: only tar and tar+gzip layers are supported`);
    return verifiedBlob(archive, layer);
  });
  if (layers.length !== config.rootfs.diff_ids.length)
    fail(`the manifest has ${layers.length} layers, the configuration ${config.rootfs.diff_ids.length}`);
  return { format: 'oci-layout', architecture: config.architecture, config: config.config ?? {}, layers };
}

/** `docker save`: layers are plain tars whose sha256 is the configuration's diff_id. */
function fromDockerSave(archive: ImageArchive): OciImage {
  const images = parsed(dockerSaveSchema, json(archive, 'manifest.json', 'the image list'), 'manifest.json');
  if (images.length > 1) fail(`manifest.json lists ${images.length} images: save one image per artifact`);
  const [image] = images as [z.infer<typeof dockerSaveSchema>[number]];
  const configFile =
    archive.get(image.Config) ?? fail(`the image has no ${image.Config} (its configuration)`);
  const configDigest = /([0-9a-f]{64})(\.json)?$/.exec(image.Config)?.[1];
  if (configDigest && configDigest !== configFile.sha256)
    fail(`${image.Config} does not match its digest (sha256 ${configFile.sha256})`);
  const config = imageConfig(archive, image.Config);
  if (image.Layers.length !== config.rootfs.diff_ids.length)
    fail(
      `manifest.json lists ${image.Layers.length} layers, the configuration ${config.rootfs.diff_ids.length}`,
    );
  image.Layers.forEach((path, i) => {
    const layer = archive.get(path) ?? fail(`the image has no ${path} (layer ${i + 1})`);
    if (`sha256:${layer.sha256}` !== config.rootfs.diff_ids[i])
      fail(`${path} does not match its diff_id ${config.rootfs.diff_ids[i]} (sha256 ${layer.sha256})`);
  });
  return {
    format: 'docker-save',
    architecture: config.architecture,
    config: config.config ?? {},
    layers: image.Layers,
  };
}

/**
 * The image in an archive: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) or a
 * `docker save` archive (`manifest.json` and layer tars); the layout wins when an archive is both
 * (as Docker 25 writes it). Every blob used is checked against its sha256. `architecture` (OCI
 * words: amd64, arm64, arm) picks the manifest from a multi-platform index.
 */
export function readOciImage(archive: ImageArchive, options: { architecture?: string } = {}): OciImage {
  if (archive.has('oci-layout')) {
    const layout = parsed(
      z.object({ imageLayoutVersion: z.string() }),
      json(archive, 'oci-layout', 'the layout marker'),
      'oci-layout',
    );
    if (!layout.imageLayoutVersion.startsWith('1.'))
      fail(`oci-layout: image layout version ${layout.imageLayoutVersion} is not supported (1.x is)`);
    return fromOciLayout(archive, options.architecture);
  }
  if (archive.has('manifest.json')) return fromDockerSave(archive);
  return fail(
    'not an OCI image layout (no oci-layout and index.json) nor a docker save archive (no manifest.json)',
  );
}

/** Node's `process.arch` in the OCI image words. */
export function ociArchitecture(nodeArch: string): string {
  return (
    ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386' } as Record<string, string>)[nodeArch] ??
    nodeArch
  );
}
