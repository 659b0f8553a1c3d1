import { join } from 'node:path';
import type { FleetKey } from '../../protocol/api/artifacts.ts';
import type { IssuedDeviceCertificate } from '../../protocol/api/device-certificates.ts';
import type { MqttEndpointAnswer, Provision, ProvisionedDevice } from '../../protocol/api/provisioning.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { readJson, writeJsonAtomically } from '../../lib/atomic-file.ts';

/**
 * What provisioning answered, kept in a versioned file. Its fleet key (the one that signs
 * artifacts) comes from provisioning, or is fetched once from the server. A device certificate is
 * kept beside it (device-certificate.ts).
 */
export type AgentCredentials = Omit<ProvisionedDevice, 'certificatePem'> & {
  schemaVersion: 1;
  /**
   * sha256 of the provisioning token these came from; null when the device id and secret were
   * given; absent in files written before it was recorded.
   */
  provisioningTokenSha256?: string | null;
};

export const credentialsPath = (dataDir: string) => join(dataDir, 'credentials.json');

export function loadCredentials(dataDir: string): AgentCredentials | null {
  return readJson<AgentCredentials>(credentialsPath(dataDir));
}

export function saveCredentials(dataDir: string, credentials: AgentCredentials): void {
  writeJsonAtomically(credentialsPath(dataDir), credentials, 0o600);
}

/** `fetch` as the agent's server trust makes it (see server-trust.ts). */
export type ServerFetch = typeof globalThis.fetch;

/** A server that accepts the connection and never answers must not hold the agent's start for good. */
const SERVER_ANSWER_TIMEOUT_MS = 30_000;

async function postJson<T>(
  fetch: ServerFetch,
  url: string,
  authorization: string | null,
  body: unknown,
): Promise<T> {
  let response: Response;
  try {
    response = await fetch(url, {
      signal: AbortSignal.timeout(SERVER_ANSWER_TIMEOUT_MS),
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        ...(authorization ? { authorization } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    if (error instanceof BoardfleetError) throw error;
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

/**
 * Registers this device with a fleet provisioning token; the credentials come back once, with a
 * certificate for the key of `csr` when the fleet requires device certificates.
 */
export async function provisionDevice(
  options: Provision & { serverUrl: string; provisioningToken: string; fetch: ServerFetch },
): Promise<{ credentials: AgentCredentials; certificatePem: string | null }> {
  const registration: Provision = {
    name: options.name,
    ...(options.board ? { board: options.board } : {}),
    ...(options.tags?.length ? { tags: options.tags } : {}),
    ...(options.csr ? { csr: options.csr } : {}),
  };
  const { certificatePem, ...result } = await postJson<ProvisionedDevice>(
    options.fetch,
    new URL('/api/v1/provision', options.serverUrl).toString(),
    `Bearer ${options.provisioningToken}`,
    registration,
  );
  return { credentials: { schemaVersion: 1, ...result }, certificatePem: certificatePem ?? null };
}

/**
 * A certificate for the device's key (`csr`), asked for over HTTPS as the device; null when the
 * fleet issues none.
 */
export async function fetchDeviceCertificate(
  fetch: ServerFetch,
  serverUrl: string,
  device: { deviceId: string; secret: string },
  csr: string,
): Promise<string | null> {
  const { certificatePem } = await postJson<IssuedDeviceCertificate>(
    fetch,
    new URL('/api/v1/device-certificate', serverUrl).toString(),
    `Basic ${Buffer.from(`${device.deviceId}:${device.secret}`).toString('base64')}`,
    { csr },
  );
  return certificatePem;
}

export async function fetchFleetKey(fetch: ServerFetch, serverUrl: string): Promise<string> {
  const { publicKeyPem } = await postJson<FleetKey>(
    fetch,
    new URL('/api/v1/fleet-key', serverUrl).toString(),
    null,
    undefined,
  );
  return publicKeyPem;
}

/**
 * The broker's URL as the server names it for the host the agent reached it by. With the device's
 * credentials the server also makes sure that broker knows the device: so a device registered
 * before the fleet moved to Mosquitto gets its credential there.
 */
export async function fetchMqttUrl(
  fetch: ServerFetch,
  serverUrl: string,
  device?: { deviceId: string; secret: string },
): Promise<string> {
  const basic = device && Buffer.from(`${device.deviceId}:${device.secret}`).toString('base64');
  const { mqttUrl } = await postJson<MqttEndpointAnswer>(
    fetch,
    new URL('/api/v1/mqtt-endpoint', serverUrl).toString(),
    basic ? `Basic ${basic}` : null,
    undefined,
  );
  return mqttUrl;
}
