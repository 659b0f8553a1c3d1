import type { Command } from 'commander';
import type { CreatedProvisioningToken } from '../../protocol/api/provisioning.ts';
import type { CreatedOperatorToken } from '../../protocol/api/session.ts';
import { ApiClient } from '../api-client.ts';
import { printJson } from '../output.ts';

export function register(program: Command): void {
  const tokens = program.command('tokens').description('Create provisioning and operator tokens');

  tokens
    .command('create-provisioning')
    .description('Create a fleet provisioning token; agents started with it register themselves')
    .option('--name <name>', 'what the token is for', 'fleet')
    .option('--expires-in-hours <hours>', 'stop accepting it after this many hours')
    .option('--json', 'machine-readable output')
    .action(async (options: { name: string; expiresInHours?: string; json?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      const created = await api.request<CreatedProvisioningToken>('POST', '/api/v1/provisioning-tokens', {
        name: options.name,
        ...(options.expiresInHours ? { expiresInHours: Number(options.expiresInHours) } : {}),
      });
      if (options.json) return printJson(created);
      process.stdout.write(
        `Provisioning token ${created.id}: ${created.token}\n` +
          `Start agents with: boardfleet agent --server ${api.baseUrl} --provisioning-token ${created.token} --name NAME\n`,
      );
    });

  tokens
    .command('create-operator <name>')
    .description('Create an operator API token (admin only)')
    .option('--role <role>', 'admin, operator or viewer', 'operator')
    .option('--json', 'machine-readable output')
    .action(async (name: string, options: { role: string; json?: boolean }) => {
      const created = await ApiClient.fromEnvironment().request<CreatedOperatorToken>(
        'POST',
        '/api/v1/operator-tokens',
        { name, role: options.role },
      );
      if (options.json) return printJson(created);
      process.stdout.write(`Operator token ${created.id} (${options.role}): ${created.token}\n`);
    });
}
