/** Nest injection token for the Kysely instance (opened before Nest starts, closed after it stops). */
export const DATABASE = Symbol('DATABASE');
