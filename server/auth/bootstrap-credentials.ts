import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_TOKEN_FILE } from '../../protocol/api/session.ts';
import type { OperatorTokenRepository } from './operator-token.repository.ts';

const SERVER_MQTT_SECRET_FILE = 'server-mqtt.secret';

/**
 * On the first start (no operator token yet) an admin token is created and written to the data
 * dir, readable by its owner only; the CLI picks it up from there. A start that finds every token
 * revoked or expired does the same: the data dir's owner can always get back in.
 */
export async function ensureAdminToken(dataDir: string, tokens: OperatorTokenRepository, now: number) {
  const path = join(dataDir, ADMIN_TOKEN_FILE);
  if ((await tokens.countActive(now)) === 0) {
    const { token } = await tokens.create('admin', 'admin', null, now);
    writeFileSync(path, `${token}\n`, { mode: 0o600 });
    return { token, path, created: true };
  }
  return { token: existsSync(path) ? readFileSync(path, 'utf8').trim() : '', path, created: false };
}

/** The server's own broker credential; kept so an external broker can be configured with it later. */
export function ensureServerMqttSecret(dataDir: string): string {
  const path = join(dataDir, SERVER_MQTT_SECRET_FILE);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const secret = randomBytes(32).toString('base64url');
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return secret;
}
