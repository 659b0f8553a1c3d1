import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';

/** One entry of a tar built for a test; paths are written as given, `..` and `/` included. */
export type TestTarEntry =
  | { path: string; type?: 'File'; content?: string | Buffer; mode?: number; uid?: number; gid?: number }
  | { path: string; type: 'Directory'; mode?: number; uid?: number; gid?: number }
  | { path: string; type: 'SymbolicLink' | 'Link'; linkpath: string };

/** The bytes of a tar holding `entries` exactly as given (tar.c would clean the bad paths up). */
export function tarBytes(entries: TestTarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const body =
      entry.type === undefined || entry.type === 'File' ? Buffer.from(entry.content ?? '') : Buffer.alloc(0);
    const header = new Header({
      path: entry.path,
      type: entry.type ?? 'File',
      mode:
        'mode' in entry && entry.mode !== undefined ? entry.mode : entry.type === 'Directory' ? 0o755 : 0o644,
      size: body.length,
      mtime: new Date(0),
      uid: 'uid' in entry ? (entry.uid ?? 0) : 0,
      gid: 'gid' in entry ? (entry.gid ?? 0) : 0,
      ...('linkpath' in entry ? { linkpath: entry.linkpath } : {}),
    });
    header.encode();
    blocks.push(header.block as Buffer, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** An image's run configuration and layers, to build as an OCI layout or a docker save archive. */
export interface TestImage {
  config?: Record<string, unknown>;
  layers: TestTarEntry[][];
  architecture?: string;
}

function configBytes(image: TestImage, diffIds: string[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      architecture: image.architecture ?? 'amd64',
      os: 'linux',
      config: image.config ?? { Cmd: ['/bin/true'] },
      rootfs: { type: 'layers', diff_ids: diffIds.map((id) => `sha256:${id}`) },
    }),
  );
}

/** The entries of an OCI image layout tar for `image`, layers gzipped. */
export function ociLayoutEntries(image: TestImage): TestTarEntry[] {
  const blobs: TestTarEntry[] = [];
  const blob = (bytes: Buffer, mediaType: string) => {
    const digest = sha256(bytes);
    blobs.push({ path: `blobs/sha256/${digest}`, content: bytes });
    return { mediaType, digest: `sha256:${digest}`, size: bytes.length };
  };
  const plainLayers = image.layers.map(tarBytes);
  const layers = plainLayers.map((layer) =>
    blob(gzipSync(layer), 'application/vnd.oci.image.layer.v1.tar+gzip'),
  );
  const config = blob(
    configBytes(image, plainLayers.map(sha256)),
    'application/vnd.oci.image.config.v1+json',
  );
  const manifest = blob(
    Buffer.from(JSON.stringify({ schemaVersion: 2, config, layers })),
    'application/vnd.oci.image.manifest.v1+json',
  );
  return [
    { path: 'oci-layout', content: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
    {
      path: 'index.json',
      content: JSON.stringify({
        schemaVersion: 2,
        manifests: [{ ...manifest, platform: { architecture: image.architecture ?? 'amd64', os: 'linux' } }],
      }),
    },
    ...blobs,
  ];
}

/** The entries of a `docker save` archive for `image` (plain layer tars, the pre-25 layout). */
export function dockerSaveEntries(image: TestImage): TestTarEntry[] {
  const layers = image.layers.map(tarBytes);
  const config = configBytes(image, layers.map(sha256));
  const configPath = `${sha256(config)}.json`;
  const layerPaths = layers.map((layer) => `${sha256(layer)}/layer.tar`);
  return [
    { path: configPath, content: config },
    ...layers.map((layer, i) => ({ path: layerPaths[i] as string, content: layer })),
    {
      path: 'manifest.json',
      content: JSON.stringify([{ Config: configPath, RepoTags: ['app:1'], Layers: layerPaths }]),
    },
  ];
}

/** Writes a tar of `entries` to `path`. */
export function writeTar(path: string, entries: TestTarEntry[]): string {
  writeFileSync(path, tarBytes(entries));
  return path;
}
