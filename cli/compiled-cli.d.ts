import type { CommandIndex } from './main.ts';

export const BUILD_DIR: string;
export const MANIFEST: string;
export function freshBuild(root: URL | string): CommandIndex | null;
