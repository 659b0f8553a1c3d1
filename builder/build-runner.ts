import type { BuildOutputRole } from '../protocol/api/builds.ts';
import type { ArtifactKind } from '../protocol/manifest.ts';

/** One file a build produced, to be stored as a signed artifact under its role. */
export interface BuiltFile {
  role: BuildOutputRole;
  path: string;
  name: string;
  version: string;
  kind: ArtifactKind;
  boards: string[];
}

/** What a running build may do: say what it is doing, write its log, and notice a cancel. */
export interface BuildReporter {
  readonly signal: AbortSignal;
  log(line: string): void;
  progress(step: string, percent: number): void;
}

export interface BuildRequest {
  recipe: string;
  board: string;
}

/** Runs one build to files on disk; the server's build queue stores them as artifacts. */
export type BuildRunner = (request: BuildRequest, reporter: BuildReporter) => Promise<BuiltFile[]>;
