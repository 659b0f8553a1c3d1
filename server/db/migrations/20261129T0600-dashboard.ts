import { type Kysely, sql } from 'kysely';

// A migration is history: it keeps its own copy of what it needs, as it was when it was written,
// so that later changes to the live code (telemetry/health-problem.ts, the protocol's inventory
// schema) cannot change what it did.

/** The parts of a stored inventory this migration reads. */
interface StoredInventory {
  board: string;
  slots: Array<{ version: string | null; active: boolean }>;
  attachedBoards: Array<{ port: string; board: string | null; firmware: string | null }>;
}

function runningVersion(inventory: StoredInventory): string | null {
  return inventory.slots.find((slot) => slot.active)?.version ?? null;
}

function attachedBoardProblem(inventory: StoredInventory): string | null {
  const silent = inventory.attachedBoards.filter((board) => board.board !== null && board.firmware === null);
  if (silent.length === 0) return null;
  return silent.map((board) => `${board.board} on ${board.port} does not answer Firmata`).join(', ');
}

/**
 * What the dashboard filters, counts and sorts by, kept in plain columns so 10,000 devices are
 * filtered and counted in SQL: the version the device runs and the board it reports (both from
 * its inventory), and why its latest heartbeat or attached board looks unhealthy (null when fine).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('devices').addColumn('running_version', 'text').execute();
  await db.schema.alterTable('devices').addColumn('reported_board', 'text').execute();
  await db.schema.alterTable('devices').addColumn('health_problem', 'text').execute();
  await db.schema.alterTable('devices').addColumn('attached_board_problem', 'text').execute();
  await db.schema
    .createIndex('devices_by_lower_name')
    .on('devices')
    .expression(sql`lower(name)`)
    .execute();
  await db.schema.createIndex('devices_by_last_seen').on('devices').column('last_seen_at').execute();
  await db.schema.createIndex('devices_by_running_version').on('devices').column('running_version').execute();
  // A device's deployment history is read by device; the primary key starts with the rollout.
  await db.schema
    .createIndex('rollout_devices_by_device')
    .on('rollout_devices')
    .column('device_id')
    .execute();

  const typed = db as Kysely<{ devices: { id: string; inventory: string | null } }>;
  const reported = await typed
    .selectFrom('devices')
    .select(['id', 'inventory'])
    .where('inventory', 'is not', null)
    .execute();
  for (const row of reported) {
    const inventory = JSON.parse(row.inventory as string) as StoredInventory;
    await sql`update devices set running_version = ${runningVersion(inventory)}, reported_board = ${inventory.board},
      attached_board_problem = ${attachedBoardProblem(inventory)} where id = ${row.id}`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('rollout_devices_by_device').execute();
  await db.schema.dropIndex('devices_by_running_version').execute();
  await db.schema.dropIndex('devices_by_last_seen').execute();
  await db.schema.dropIndex('devices_by_lower_name').execute();
  for (const column of ['attached_board_problem', 'health_problem', 'reported_board', 'running_version']) {
    await db.schema.alterTable('devices').dropColumn(column).execute();
  }
}
