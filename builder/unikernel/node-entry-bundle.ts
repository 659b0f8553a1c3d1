import { writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { build } from 'esbuild';
import { sha256 } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { REQUIRE_BANNER } from '../agent-runtime/agent-bundle.ts';

/**
 * Bundles a Node application's entry module and what it imports into one ES module, with no
 * paths of this machine in it, so the same sources give the same bytes. Native addons cannot be
 * bundled: an import of one is an error naming it.
 */
export async function bundleNodeEntry(options: { entry: string; outFile: string }): Promise<{
  file: string;
  sha256: string;
  size: number;
  packages: Array<{ name: string; version: string }>;
}> {
  const root = dirname(options.entry);
  let contents: Buffer;
  let inputs: string[];
  try {
    const result = await build({
      absWorkingDir: root,
      entryPoints: [options.entry],
      outfile: `${root}/bundle.mjs`,
      write: false,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      banner: { js: REQUIRE_BANNER },
      sourcemap: false,
      metafile: true,
      logLevel: 'silent',
      loader: { '.node': 'empty' },
    });
    contents = Buffer.from(result.outputFiles[0]!.contents);
    inputs = Object.keys(result.metafile.inputs);
  } catch (error) {
    const messages = (error as { errors?: Array<{ text: string }> }).errors?.map((message) => message.text);
    throw new BoardfleetError(
      'app-bundle-failed',
      `bundling ${options.entry} failed: ${messages?.join('; ') ?? (error as Error).message}`,
      { cause: error },
    );
  }
  const native = inputs.find((input) => input.endsWith('.node'));
  if (native) {
    throw new BoardfleetError(
      'app-bundle-native',
      `${options.entry} imports the native addon ${native}, which a single-file bundle cannot carry`,
    );
  }
  await writeFile(options.outFile, contents);
  const packages = new Map<string, string>();
  for (const input of inputs) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) packages.set(match[1]!, 'NOASSERTION');
  }
  return {
    file: options.outFile,
    sha256: sha256(contents),
    size: contents.length,
    packages: [...packages].sort().map(([name, version]) => ({ name, version })),
  };
}
