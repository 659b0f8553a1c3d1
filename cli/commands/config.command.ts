import type { Command } from 'commander';
import type {
  ConfigScope,
  ConfigVariable,
  ConfigVariableList,
  DeviceConfig,
} from '../../protocol/api/config-variables.ts';
import type { Device } from '../../protocol/api/devices.ts';
import { checkConfigName } from '../../protocol/device-config.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient } from '../api-client.ts';
import { findDevice } from '../device-lookup.ts';
import { formatAge, printJson, printTable } from '../output.ts';

interface ScopeOptions {
  fleet?: boolean;
  tag?: string;
  device?: string;
}

const VARIABLES = '/api/v1/config/variables';

/** `KEY=VALUE` → [key, value]; the value may hold `=` and be empty. */
export function splitAssignment(assignment: string): [string, string] {
  const equals = assignment.indexOf('=');
  if (equals < 0)
    throw new BoardfleetError(
      'invalid-arguments',
      `give KEY=VALUE (got ${assignment}), e.g. DB_HOST=10.0.0.5`,
    );
  return [checkConfigName(assignment.slice(0, equals)), assignment.slice(equals + 1)];
}

/** The one scope chosen (`--fleet` by default); its target a tag or a device id. */
async function chosenScope(
  api: ApiClient,
  options: ScopeOptions,
): Promise<{ scope: ConfigScope; target?: string }> {
  const chosen = [options.fleet && '--fleet', options.tag && '--tag', options.device && '--device'].filter(
    Boolean,
  );
  if (chosen.length > 1)
    throw new BoardfleetError('invalid-arguments', `choose one scope, not ${chosen.join(' and ')}`);
  if (options.tag) return { scope: 'tag', target: options.tag };
  if (options.device) return { scope: 'device', target: (await findDevice(api, options.device)).id };
  return { scope: 'fleet' };
}

const scopeText = (variable: Pick<ConfigVariable, 'scope' | 'target'>) =>
  variable.scope === 'fleet' ? 'fleet' : `${variable.scope} ${variable.target}`;

const shownValue = (variable: { value?: string | undefined; secret: boolean }) =>
  variable.secret ? '(secret)' : (variable.value ?? '');

function printDeviceConfig(config: DeviceConfig, device: Device): void {
  if (config.variables.length === 0) process.stdout.write(`${device.name} (${device.id}) has no variables\n`);
  else
    printTable(
      config.variables.map((variable) => ({
        name: variable.name,
        value: shownValue(variable),
        source: variable.source,
      })),
      ['name', 'value', 'source'],
    );
  const state = config.applied
    ? 'applied'
    : `pending (device reported ${config.reportedHash ? config.reportedHash.slice(0, 12) : 'nothing yet'}, effective ${config.hash.slice(0, 12)})`;
  process.stdout.write(`config: ${state}\n`);
}

export function register(program: Command): void {
  const config = program
    .command('config')
    .description(
      'Configuration variables: fleet, tag and device values, given to apps as environment variables',
    )
    .addHelpText(
      'after',
      `
A device's value overrides its tags', a tag's the fleet's; a device with several tags takes
them in alphabetical order of the tag, the later winning. Secret values are never shown again.

Examples:
  boardfleet config set LOG_LEVEL=info
  boardfleet config set LOG_LEVEL=debug --tag bench
  boardfleet config set API_TOKEN=s3cr3t --device kitchen-pi --secret
  boardfleet config list --device kitchen-pi
  boardfleet config unset LOG_LEVEL --tag bench`,
    );

  const scopeFlags = (command: Command) =>
    command
      .option('--fleet', 'every device (the default)')
      .option('--tag <tag>', 'devices with this tag')
      .option('--device <id-or-name>', 'one device');

  scopeFlags(
    config
      .command('set <KEY=VALUE>')
      .description('Set a variable; the devices it changes restart their app with it (no new release)'),
  )
    .option('--secret', 'write-only: the value is never shown again')
    .option('--json', 'machine-readable output')
    .action(async (assignment: string, options: ScopeOptions & { secret?: boolean; json?: boolean }) => {
      const [name, value] = splitAssignment(assignment);
      const api = ApiClient.fromEnvironment();
      const scope = await chosenScope(api, options);
      const variable = await api.request<ConfigVariable>('PUT', `${VARIABLES}/${encodeURIComponent(name)}`, {
        value,
        ...scope,
        ...(options.secret ? { secret: true } : {}),
      });
      if (options.json) return printJson(variable);
      process.stdout.write(`Set ${name}=${shownValue(variable)} for the ${scopeText(variable)}\n`);
    });

  scopeFlags(config.command('unset <KEY>').description('Remove a variable from one scope'))
    .option('--json', 'machine-readable output')
    .action(async (key: string, options: ScopeOptions & { json?: boolean }) => {
      const name = checkConfigName(key);
      const api = ApiClient.fromEnvironment();
      const scope = await chosenScope(api, options);
      const query = new URLSearchParams({
        scope: scope.scope,
        ...(scope.target ? { target: scope.target } : {}),
      });
      const variable = await api.request<ConfigVariable>(
        'DELETE',
        `${VARIABLES}/${encodeURIComponent(name)}?${query}`,
      );
      if (options.json) return printJson(variable);
      process.stdout.write(`Unset ${name} for the ${scopeText(variable)}\n`);
    });

  config
    .command('list')
    .description("Every variable at every scope, or a device's effective values and where each comes from")
    .option('--device <id-or-name>', "the device's effective values, and whether it applied them")
    .option('--json', 'machine-readable output')
    .action(async (options: { device?: string; json?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      if (options.device) {
        const device = await findDevice(api, options.device);
        const effective = await api.request<DeviceConfig>(
          'GET',
          `/api/v1/devices/${encodeURIComponent(device.id)}/config`,
        );
        return options.json ? printJson(effective) : printDeviceConfig(effective, device);
      }
      const { variables } = await api.request<ConfigVariableList>('GET', VARIABLES);
      if (options.json) return printJson(variables);
      if (variables.length === 0) return void process.stdout.write('no variables set\n');
      printTable(
        variables.map((variable) => ({
          scope: scopeText(variable),
          name: variable.name,
          value: shownValue(variable),
          updated: `${formatAge(variable.updatedAt)} by ${variable.updatedBy}`,
        })),
        ['scope', 'name', 'value', 'updated'],
      );
    });
}
