import type { TopLevelRole } from '../../protocol/tuf/metadata.ts';
import type { Database } from '../db/database.ts';

/** A signed document as stored: its facts, and without `document` when only those were read. */
export interface DocumentFacts {
  role: TopLevelRole;
  version: number;
  signedAt: number;
  expiresAt: number;
  /** The online key that signed it; null for a root. */
  keyId: string | null;
  /** For targets: how many targets it lists. */
  targetCount: number | null;
}

export interface StoredDocument extends DocumentFacts {
  /** The JSON text, byte for byte as served and hashed. */
  document: string;
}

/** Owns `tuf_metadata`: every version of every signed document of the fleet's TUF repository. */
export class TufMetadataRepository {
  constructor(private readonly db: Database) {}

  /**
   * Stores a document under its version unless that version exists: (role, version) is unique,
   * so of two replicas signing the same version one wins. False when this one lost.
   */
  async insert(stored: StoredDocument): Promise<boolean> {
    const result = await this.db
      .insertInto('tuf_metadata')
      .values({
        role: stored.role,
        version: stored.version,
        document: stored.document,
        signed_at: stored.signedAt,
        expires_at: stored.expiresAt,
        key_id: stored.keyId,
        target_count: stored.targetCount,
      })
      .onConflict((conflict) => conflict.columns(['role', 'version']).doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async latest(role: TopLevelRole): Promise<StoredDocument | null> {
    const row = await this.db
      .selectFrom('tuf_metadata')
      .selectAll()
      .where('role', '=', role)
      .orderBy('version', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? { ...toFacts(row), document: row.document } : null;
  }

  /** The newest version's facts without its text, which for targets may be large. */
  async latestFacts(role: TopLevelRole): Promise<DocumentFacts | null> {
    const row = await this.db
      .selectFrom('tuf_metadata')
      .select(['role', 'version', 'signed_at', 'expires_at', 'key_id', 'target_count'])
      .where('role', '=', role)
      .orderBy('version', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? toFacts(row) : null;
  }

  async get(role: TopLevelRole, version: number): Promise<StoredDocument | null> {
    const row = await this.db
      .selectFrom('tuf_metadata')
      .selectAll()
      .where('role', '=', role)
      .where('version', '=', version)
      .executeTakeFirst();
    return row ? { ...toFacts(row), document: row.document } : null;
  }
}

function toFacts(row: {
  role: TopLevelRole;
  version: number;
  signed_at: number;
  expires_at: number;
  key_id: string | null;
  target_count: number | null;
}): DocumentFacts {
  return {
    role: row.role,
    version: row.version,
    signedAt: row.signed_at,
    expiresAt: row.expires_at,
    keyId: row.key_id,
    targetCount: row.target_count,
  };
}
