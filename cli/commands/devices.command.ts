import type { Command } from 'commander';
import type { DeviceConfig } from '../../protocol/api/config-variables.ts';
import type { ConsoleList } from '../../protocol/api/consoles.ts';
import type {
  CreatedDevice,
  Device,
  DeviceDeployments,
  DeviceDetails,
  DevicePage,
  StoredHealth,
} from '../../protocol/api/devices.ts';
import { consolePath } from '../../protocol/device-console.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient, apiErrorMessage } from '../api-client.ts';
import {
  formatAge,
  formatBytes,
  formatDuration,
  formatNumber,
  formatPercent,
  printJson,
  printTable,
} from '../output.ts';

const collect = (value: string, previous: string[]) => [...previous, value];
/** How many deployments `devices show` lists; the API has them all. */
const RECENT_DEPLOYMENTS = 5;

const devicePath = (id: string) => `/api/v1/devices/${encodeURIComponent(id)}`;

/** `1.2 GiB free of 3.8 GiB (31%)` */
function freeOf(free: number, total: number): string {
  const share = total > 0 ? ` (${formatPercent((free / total) * 100)})` : '';
  return `${formatBytes(free)} free of ${formatBytes(total)}${share}`;
}

function healthLine(health: StoredHealth): string {
  const temperature =
    health.cpuTemperatureCelsius === null ? 'n/a' : `${formatNumber(health.cpuTemperatureCelsius, 1)} °C`;
  return (
    `  health (${formatAge(health.at)}): uptime ${formatDuration(health.uptimeSeconds)}, ` +
    `load ${health.load.map((value) => formatNumber(value)).join(' ')}, ` +
    `memory ${freeOf(health.memory.availableBytes, health.memory.totalBytes)}, ` +
    `disk ${freeOf(health.disk.freeBytes, health.disk.totalBytes)}, ` +
    `temperature ${temperature}, agent RSS ${formatBytes(health.agentRssBytes)}`
  );
}

/**
 * The running version (and the desired one while they differ: an update or a rollback on its way)
 * and, where the inventory has them, what each slot and attached board holds.
 */
function versionLines(device: DeviceDetails): string[] {
  const pending =
    device.desiredVersion && device.desiredVersion !== device.runningVersion
      ? ` (desired ${device.desiredVersion})`
      : '';
  const lines = [`  version:   ${device.runningVersion ?? '-'}${pending}`];
  const slots = device.inventory?.slots ?? [];
  if (slots.length > 0) {
    const described = slots.map(
      (slot) =>
        `${slot.name}: ${slot.artifact ? `${slot.artifact} ${slot.version ?? '?'}` : 'empty'}${slot.active ? ' (active)' : ''}`,
    );
    lines.push(`  slots:     ${described.join(', ')}`);
  }
  for (const attached of device.inventory?.attachedBoards ?? []) {
    const firmware = attached.firmware
      ? `${attached.firmware} ${attached.firmwareVersion ?? ''}`.trim()
      : 'no firmware';
    lines.push(`  attached:  ${attached.port} ${attached.board ?? 'unknown board'}, ${firmware}`);
  }
  return lines;
}

/** `config: applied`, or pending with the hash the device reported (boardfleet config list --device has the values). */
async function configLine(api: ApiClient, device: DeviceDetails): Promise<string> {
  if (device.configApplied) return '  config:    applied';
  const { reportedHash } = await api.request<DeviceConfig>('GET', `${devicePath(device.id)}/config`);
  return `  config:    pending (device reported ${reportedHash ? reportedHash.slice(0, 12) : 'no config yet'})`;
}

function deploymentLines({ deployments }: DeviceDeployments): string[] {
  if (deployments.length === 0) return ['  deployments: none yet'];
  const recent = deployments.slice(0, RECENT_DEPLOYMENTS);
  const more = deployments.length - recent.length;
  return [
    `  deployments (newest first${more > 0 ? `, ${more} older not shown` : ''}):`,
    ...recent.map(
      (deployment) =>
        `    ${formatAge(deployment.stateChangedAt).padEnd(8)} ${deployment.release} ${deployment.version ?? '(not sent)'}: ` +
        `${deployment.outcome ?? deployment.state}${deployment.reason ? ` — ${deployment.reason}` : ''} ` +
        `(rollout ${deployment.rolloutName}, ${deployment.rolloutId})`,
    ),
  ];
}

export function register(program: Command): void {
  const devices = program
    .command('devices')
    .description('Add, list, show, rename, revoke and delete devices (talks to the server)')
    .addHelpText(
      'after',
      `
Examples:
  boardfleet devices add kitchen-pi --tag lab --board rpi-4b
  boardfleet devices list --online --tag lab
  boardfleet devices show dev-3f9c…
  boardfleet devices rename dev-3f9c… hall-pi
  boardfleet devices revoke dev-3f9c… && boardfleet devices delete dev-3f9c…
  boardfleet devices console dev-3f9c… http-hello`,
    );

  devices
    .command('add <name>')
    .description('Create a device and print its id and secret (the secret is shown only once)')
    .option('--tag <tag>', 'tag the device (repeatable)', collect, [])
    .option('--board <board>', 'board type, e.g. rpi-4b')
    .option('--allow-duplicate', 'accept a name another device already has')
    .option('--json', 'machine-readable output')
    .action(
      async (
        name: string,
        options: { tag: string[]; board?: string; allowDuplicate?: boolean; json?: boolean },
      ) => {
        const api = ApiClient.fromEnvironment();
        const created = await api.request<CreatedDevice>('POST', '/api/v1/devices', {
          name,
          tags: options.tag,
          ...(options.board ? { board: options.board } : {}),
          ...(options.allowDuplicate ? { allowDuplicate: true } : {}),
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
      },
    );

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
            version: device.runningVersion ?? '-',
            tags: device.tags.join(',') || '-',
            'last seen': formatAge(device.lastSeenAt),
          })),
          ['id', 'name', 'status', 'board', 'version', 'tags', 'last seen'],
        );
      },
    );

  devices
    .command('show <id>')
    .description('Show a device: inventory, versions, latest health and recent deployments')
    .option('--json', 'machine-readable output (the device as the API gives it)')
    .action(async (id: string, options: { json?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      const device = await api.request<DeviceDetails>('GET', devicePath(id));
      if (options.json) return printJson(device);
      const deployments = await api.request<DeviceDeployments>('GET', `${devicePath(id)}/deployments`);
      const inventory = device.inventory;
      const lines = [
        `${device.id}  ${device.name}  ${device.revokedAt ? 'REVOKED' : device.online ? 'online' : 'offline'} (since ${formatAge(device.presenceChangedAt)})`,
        `  tags:      ${device.tags.join(', ') || '-'}`,
        `  board:     ${inventory?.board ?? device.board ?? '-'}`,
        `  system:    ${inventory ? `${inventory.os}, kernel ${inventory.kernel}, ${inventory.architecture}` : '-'}`,
        `  agent:     ${inventory?.agentVersion ?? '-'}`,
        ...versionLines(device),
        `  last seen: ${formatAge(device.lastSeenAt)}`,
        await configLine(api, device),
        device.latestHealth ? healthLine(device.latestHealth) : '  health:    no heartbeat yet',
        ...deploymentLines(deployments),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  devices
    .command('rename <id> <name>')
    .description('Rename a device (its id, secret and history stay)')
    .option('--allow-duplicate', 'accept a name another device already has')
    .option('--json', 'machine-readable output')
    .action(async (id: string, name: string, options: { allowDuplicate?: boolean; json?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      const before = await api.request<Device>('GET', devicePath(id));
      const device = await api.request<Device>('PATCH', devicePath(id), {
        name,
        ...(options.allowDuplicate ? { allowDuplicate: true } : {}),
      });
      if (options.json) return printJson(device);
      process.stdout.write(`Renamed ${device.id}: ${before.name} → ${device.name}\n`);
    });

  devices
    .command('revoke <id>')
    .description('Revoke a device: its credential stops working and its connection is dropped')
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { json?: boolean }) => {
      const device = await ApiClient.fromEnvironment().request<Device>('POST', `${devicePath(id)}/revoke`);
      if (options.json) return printJson(device);
      process.stdout.write(`Revoked ${device.id} (${device.name})\n`);
    });

  devices
    .command('delete <id>')
    .description(
      'Delete a revoked device with its history and its MQTT session (revoke it first: boardfleet devices revoke ID)',
    )
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { json?: boolean }) => {
      const device = await ApiClient.fromEnvironment().request<Device>('DELETE', devicePath(id));
      if (options.json) return printJson(device);
      process.stdout.write(`Deleted ${device.id} (${device.name})\n`);
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
        const { consoles } = await api.request<ConsoleList>('GET', `${devicePath(device)}/consoles`);
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
    response = await api.fetch(`${api.baseUrl}${path}`, {
      headers: { authorization: `Bearer ${api.token}` },
    });
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
    throw new BoardfleetError('api-error', apiErrorMessage('GET', path, response.status, message));
  }
  return text;
}
