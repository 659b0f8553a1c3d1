import type { DevicePage } from '../protocol/api/devices.ts';
import { BoardfleetError } from '../protocol/errors.ts';
import type { ApiClient } from './api-client.ts';

export type Device = DevicePage['devices'][number];

/**
 * A device by its id or, failing that, its name (case aside), as commands that act on one device
 * take it; a name several devices share is refused with their ids.
 */
export async function findDevice(api: ApiClient, idOrName: string): Promise<Device> {
  const page = await api.request<DevicePage>(
    'GET',
    `/api/v1/devices?${new URLSearchParams({ q: idOrName, limit: '1000' })}`,
  );
  const byId = page.devices.find((device) => device.id === idOrName);
  if (byId) return byId;
  const named = page.devices.filter((device) => device.name.toLowerCase() === idOrName.toLowerCase());
  if (named.length === 1) return named[0] as Device;
  if (named.length > 1)
    throw new BoardfleetError(
      'invalid-arguments',
      `${named.length} devices are named ${idOrName} (${named.map((device) => device.id).join(', ')}): give the id`,
    );
  throw new BoardfleetError(
    'not-found',
    `no device has the id or name ${idOrName} (boardfleet devices list)`,
  );
}
