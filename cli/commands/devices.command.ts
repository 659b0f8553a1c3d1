import type { Command } from 'commander';
import type { ConsoleList } from '../../protocol/api/consoles.ts';
import type { CreatedDevice, Device, DeviceDetails, DevicePage } from '../../protocol/api/devices.ts';
import { consolePath } from '../../protocol/device-console.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient } from '../api-client.ts';
import { formatAge, formatBytes, printJson, printTable } from '../output.ts';

const collect = (value: string, previous: string[]) => [...previous, value];

export function register(program: Command): void {
  const devices = program
    .command('devices')
    .description('Add, list, show and revoke devices (talks to the server)');

  devices
    .command('add <name>')
    .description('Create a device and print its id and secret (the secret is shown only once)')
    .option('--tag <tag>', 'tag the device (repeatable)', collect, [])
    .option('--board <board>', 'board type, e.g. rpi-4b')
    .option('--json', 'machine-readable output')
    .action(async (name: string, options: { tag: string[]; board?: string; json?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      const created = await api.request<CreatedDevice>('POST', '/api/v1/devices', {
        name,
        tags: options.tag,
        ...(options.board ? { board: options.board } : {}),
      });
      if (options.json)
        return printJson({ id: created.device.id, secret: created.secret, device: created.device });
      process.stdout.write(
        `Created device ${created.device.id} (${name})\n` +
          `  secret: ${created.secret}\n` +
          '  The secret is shown only this once. Keep it in a file only the agent can read\n' +
          '  (SECRET_FILE) and start its agent with:\n' +
          `  boardfleet agent --server ${api.baseUrl} --device-id ${created.device.id} --secret-file SECRET_FILE\n`,
      );
    });

  devices
    .command('list')
    .description('List devices')
    .option('--online', 'only devices that are online')
    .option('--offline', 'only devices that are offline')
    .option('--tag <tag>', 'only devices with this tag')
    .option('--board <board>', 'only devices of this board type')
    .option('--limit <n>', 'at most this many', '100')
    .option('--json', 'machine-readable output')
    .action(
      async (options: {
        online?: boolean;
        offline?: boolean;
        tag?: string;
        board?: string;
        limit: string;
        json?: boolean;
      }) => {
        const query = new URLSearchParams({ limit: options.limit });
        if (options.online) query.set('online', 'true');
        if (options.offline) query.set('online', 'false');
        if (options.tag) query.set('tag', options.tag);
        if (options.board) query.set('board', options.board);
        const { devices: list } = await ApiClient.fromEnvironment().request<DevicePage>(
          'GET',
          `/api/v1/devices?${query}`,
        );
        if (options.json) return printJson(list);
        printTable(
          list.map((device) => ({
            id: device.id,
            name: device.name,
            status: device.online ? 'online' : 'offline',
            board: device.inventory?.board ?? device.board ?? '-',
            tags: device.tags.join(',') || '-',
            'last seen': formatAge(device.lastSeenAt),
          })),
          ['id', 'name', 'status', 'board', 'tags', 'last seen'],
        );
      },
    );

  devices
    .command('show <id>')
    .description('Show a device with its inventory and latest health')
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { json?: boolean }) => {
      const device = await ApiClient.fromEnvironment().request<DeviceDetails>(
        'GET',
        `/api/v1/devices/${encodeURIComponent(id)}`,
      );
      if (options.json) return printJson(device);
      const health = device.latestHealth;
      const inventory = device.inventory;
      const lines = [
        `${device.id}  ${device.name}  ${device.revokedAt ? 'REVOKED' : device.online ? 'online' : 'offline'} (since ${formatAge(device.presenceChangedAt)})`,
        `  tags:      ${device.tags.join(', ') || '-'}`,
        `  board:     ${inventory?.board ?? device.board ?? '-'}`,
        `  system:    ${inventory ? `${inventory.os}, kernel ${inventory.kernel}, ${inventory.architecture}` : '-'}`,
        `  agent:     ${inventory?.agentVersion ?? '-'}`,
        `  last seen: ${formatAge(device.lastSeenAt)}`,
      ];
      if (health) {
        lines.push(
          `  health (${formatAge(health.at)}): uptime ${Math.round(health.uptimeSeconds)}s, load ${health.load.join(' ')}, ` +
            `memory ${formatBytes(health.memory.availableBytes)} free of ${formatBytes(health.memory.totalBytes)}, ` +
            `disk ${formatBytes(health.disk.freeBytes)} free of ${formatBytes(health.disk.totalBytes)}, ` +
            `temperature ${health.cpuTemperatureCelsius === null ? 'n/a' : `${health.cpuTemperatureCelsius.toFixed(1)} °C`}, ` +
            `agent RSS ${formatBytes(health.agentRssBytes)}`,
        );
      } else {
        lines.push('  health:    no heartbeat yet');
      }
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  devices
    .command('revoke <id>')
    .description('Revoke a device: its credential stops working and its connection is dropped')
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { json?: boolean }) => {
      const device = await ApiClient.fromEnvironment().request<Device>(
        'POST',
        `/api/v1/devices/${encodeURIComponent(id)}/revoke`,
      );
      if (options.json) return printJson(device);
      process.stdout.write(`Revoked ${device.id} (${device.name})\n`);
    });

  devices
    .command('console <device> [artifact] [version]')
    .description(
      "A device's captured VM consoles: the list, or one printed (the artifact's newest when no version is given)",
    )
    .option('--json', 'machine-readable list')
    .action(
      async (
        device: string,
        artifact: string | undefined,
        version: string | undefined,
        options: { json?: boolean },
      ) => {
        const api = ApiClient.fromEnvironment();
        const { consoles } = await api.request<ConsoleList>(
          'GET',
          `/api/v1/devices/${encodeURIComponent(device)}/consoles`,
        );
        if (!artifact) {
          if (options.json) return printJson(consoles);
          printTable(
            consoles.map((entry) => ({
              artifact: entry.artifact,
              version: entry.version,
              size: formatBytes(entry.size),
              updated: formatAge(entry.updatedAt),
            })),
            ['artifact', 'version', 'size', 'updated'],
          );
          return;
        }
        // The list is newest first: without a version, the artifact's newest capture.
        const chosen = version ?? consoles.find((entry) => entry.artifact === artifact)?.version;
        if (!chosen) {
          throw new BoardfleetError(
            'not-found',
            `device ${device} has uploaded no console of ${artifact} (it has: ${consoles.map((entry) => `${entry.artifact} ${entry.version}`).join(', ') || 'none'})`,
          );
        }
        process.stdout.write(await fetchText(api, consolePath(device, artifact, chosen)));
      },
    );
}

/** A text answer of the API (consoles are text/plain, not JSON). */
async function fetchText(api: ApiClient, path: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(`${api.baseUrl}${path}`, { headers: { authorization: `Bearer ${api.token}` } });
  } catch (error) {
    throw new BoardfleetError(
      'server-unreachable',
      `cannot reach the Boardfleet server at ${api.baseUrl} (${(error as Error).message}); is it running? set BOARDFLEET_URL`,
    );
  }
  const text = await response.text();
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? message;
    } catch {
      // Not one of our JSON errors (a proxy's page): the status says enough.
    }
    throw new BoardfleetError('api-error', `GET ${path} failed (${response.status}): ${message}`);
  }
  return text;
}
