import { join } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';
import { readJson, writeJsonAtomically } from './atomic-file.ts';

export interface AgentCredentials {
  schemaVersion: 1;
  deviceId: string;
  secret: string;
  mqttUrl: string;
  /** The fleet key that signs artifacts; from provisioning, or fetched once from the server. */
  fleetPublicKeyPem: string;
}

export const credentialsPath = (dataDir: string) => join(dataDir, 'credentials.json');

export function loadCredentials(dataDir: string): AgentCredentials | null {
  return readJson<AgentCredentials>(credentialsPath(dataDir));
}

export function saveCredentials(dataDir: string, credentials: AgentCredentials): void {
  writeJsonAtomically(credentialsPath(dataDir), credentials, 0o600);
}

async function postJson<T>(url: string, token: string | null, body: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw new BoardfleetError(
      'server-unreachable',
      `cannot reach ${url}: ${(error as Error).cause ?? (error as Error).message}`,
    );
  }
  const parsed = (await response.json().catch(() => ({}))) as T & { message?: string };
  if (!response.ok)
    throw new BoardfleetError(
      'provisioning-failed',
      `${url} answered ${response.status}: ${parsed.message ?? response.statusText}`,
    );
  return parsed;
}

/** Registers this device with a fleet provisioning token; the credentials come back once. */
export async function provisionDevice(options: {
  serverUrl: string;
  provisioningToken: string;
  name: string;
  board?: string;
  tags?: string[];
}): Promise<AgentCredentials> {
  const result = await postJson<{
    deviceId: string;
    secret: string;
    mqttUrl: string;
    fleetPublicKeyPem: string;
  }>(new URL('/api/v1/provision', options.serverUrl).toString(), options.provisioningToken, {
    name: options.name,
    ...(options.board ? { board: options.board } : {}),
    ...(options.tags?.length ? { tags: options.tags } : {}),
  });
  return { schemaVersion: 1, ...result };
}

export async function fetchFleetKey(serverUrl: string): Promise<string> {
  const { publicKeyPem } = await postJson<{ publicKeyPem: string }>(
    new URL('/api/v1/fleet-key', serverUrl).toString(),
    null,
    undefined,
  );
  return publicKeyPem;
}
