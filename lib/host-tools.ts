import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { BoardfleetError } from '../protocol/errors.ts';

/** Each host program a caller runs, with the Debian package that brings it. */
export type ToolPackages<Tool extends string> = Readonly<Record<Tool, string>>;

/**
 * The full path of `tool` in the first directory of `searchPath` (a PATH-style list) where it is
 * executable. Missing, it is a 'tool-missing' error naming the Debian package `packages` gives.
 */
export async function findHostTool<Tool extends string>(
  tool: Tool,
  packages: ToolPackages<Tool>,
  searchPath: string,
): Promise<string> {
  for (const directory of searchPath.split(delimiter)) {
    if (!directory) continue;
    const candidate = join(directory, tool);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new BoardfleetError(
    'tool-missing',
    `${tool} is not installed (searched ${searchPath || 'an empty PATH'}). ${installHint(packages[tool])}`,
  );
}

/** For something other than a program (headers, a pkg-config file, data) that a Debian package brings. */
export function missingPackage(what: string, debianPackage: string, cause?: unknown): BoardfleetError {
  return new BoardfleetError('tool-missing', `${what} is not installed. ${installHint(debianPackage)}`, {
    cause,
  });
}

/** A host tool that ran and failed: the command line and what it said on stderr. */
export function toolFailure(tool: string, args: string[], stderr: string, cause: Error): BoardfleetError {
  return new BoardfleetError(
    'tool-failed',
    `${tool} ${args.join(' ')} failed:\n${stderr.trim() || cause.message}`,
    {
      cause,
    },
  );
}

const installHint = (debianPackage: string) => `Install it with: sudo apt-get install ${debianPackage}`;
