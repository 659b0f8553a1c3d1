import { statSync } from 'node:fs';
import semver from 'semver';
import { z } from 'zod';

/** Fields several recipe kinds share, checked the same way in each. */
export const recipeName = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes');
export const semverVersion = z
  .string()
  .refine((version) => semver.valid(version) !== null, 'a version such as 1.2.3');
export const debianMirror = z.url({ protocol: /^https?$/, error: 'an http(s) URL of a Debian mirror' });
export const debianSuite = z.string().regex(/^[a-z][a-z0-9-]*$/, 'a Debian suite such as bookworm');
export const DEFAULT_DEBIAN_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_DEBIAN_SUITE = 'bookworm';
export const hostName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a host name: letters, digits and dashes');

/** What a kind's normalisation made of a parsed recipe, and what it found wrong (files that are not there). */
export interface Normalised<Recipe> {
  recipe: Recipe;
  problems: string[];
}

export function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
