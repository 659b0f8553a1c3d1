import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { BoardfleetError, type ErrorCode } from '../protocol/errors.ts';

/** Each host program a caller runs, with the Debian package that brings it. */
export type ToolPackages<Tool extends string> = Readonly<Record<Tool, string>>;

/**
 * The full path of `tool` in the first directory of `searchPath` (a PATH-style list) where it is
 * executable, or undefined. The one PATH walk: every lookup of a host program goes through it.
 */
export function locateHostTool(tool: string, searchPath: string): string | undefined {
  for (const directory of searchPath.split(delimiter)) {
    if (!directory) continue;
    const candidate = join(directory, tool);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * The full path of `tool` on `searchPath` (see {@link locateHostTool}). Missing, it is a
 * 'tool-missing' error naming the Debian package `packages` gives.
 */
export async function findHostTool<Tool extends string>(
  tool: Tool,
  packages: ToolPackages<Tool>,
  searchPath: string,
): Promise<string> {
  const path = locateHostTool(tool, searchPath);
  if (path) return path;
  throw hostToolMissing(tool, packages[tool], searchPath);
}

/**
 * The error for a program not found on `searchPath`, naming the Debian package that brings it;
 * `code` lets a caller whose users already match on another code (qemu-missing) keep it.
 */
export function hostToolMissing(
  tool: string,
  debianPackage: string,
  searchPath: string,
  code: ErrorCode = 'tool-missing',
): BoardfleetError {
  return new BoardfleetError(
    code,
    `${tool} is not installed (searched ${searchPath || 'an empty PATH'}). ${installHint(debianPackage)}`,
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
