import { isVmBoard, listAllBoards } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

/**
 * Board ids an artifact may name: every board of the catalogue, and the boards of agents that
 * run a VM board's images (`hostBoards`, e.g. `generic-x64`), since releases target those too.
 * `artifact push` checks with it before uploading, so this file imports nothing of the server.
 */
export function knownArtifactBoards(): Set<string> {
  const known = new Set<string>();
  for (const board of listAllBoards()) {
    known.add(board.id);
    if (isVmBoard(board)) for (const host of board.hostBoards) known.add(host);
  }
  return known;
}

/**
 * Refuses an artifact for a board the catalogue does not know: under a mistyped id no device
 * would ever match it. Checked before anything is stored.
 */
export function assertKnownBoards(boards: readonly string[], known: ReadonlySet<string>): void {
  const unknown = boards.filter((board) => !known.has(board));
  if (unknown.length === 0) return;
  throw new BoardfleetError(
    'invalid-request',
    `boards: unknown board${unknown.length > 1 ? 's' : ''} ${unknown.map((board) => `"${board}"`).join(', ')}. ` +
      `Known boards: ${[...known].sort().join(', ')} (see "boardfleet boards")`,
  );
}
