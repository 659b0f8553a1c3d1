import type { Command } from 'commander';
import type { CreatedProvisioningToken } from '../../protocol/api/provisioning.ts';
import type { CreatedOperatorToken, TokenInfo, TokenList } from '../../protocol/api/session.ts';
import { parseDuration } from '../../protocol/api/token-expiry.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient } from '../api-client.ts';
import { formatTime, printJson, printTable } from '../output.ts';

const collect = (value: string, previous: string[]) => [...previous, value];

/** `--expires 30d` as the API's `expiresIn`, refused here already when it is not a duration. */
function expiresIn(value: string | undefined): { expiresIn?: string } {
  if (value === undefined) return {};
  if (parseDuration(value) === null) {
    throw new BoardfleetError(
      'invalid-option',
      `--expires ${value}: use minutes, hours or days such as 90m, 12h or 30d (at most 3650d)`,
    );
  }
  return { expiresIn: value.trim() };
}

function positiveInteger(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) {
    throw new BoardfleetError('invalid-option', `${name} ${value}: expected a whole number of at least 1`);
  }
  return number;
}

function tokenRow(token: TokenInfo): Record<string, string> {
  const fixed = [
    token.board ? `board ${token.board}` : '',
    token.tags ? `tags ${token.tags.join(',') || '(none)'}` : '',
  ]
    .filter(Boolean)
    .join('; ');
  return {
    id: token.id,
    kind: token.kind,
    name: token.name,
    role: token.role ?? '-',
    state: token.state,
    created: formatTime(token.createdAt),
    expires: formatTime(token.expiresAt),
    uses: token.kind === 'provisioning' ? `${token.uses ?? 0}/${token.maxUses ?? '∞'}` : '-',
    fixes: fixed || '-',
  };
}

export function register(program: Command): void {
  const tokens = program
    .command('tokens')
    .description('Create, list and revoke provisioning and operator tokens (admin only)')
    .addHelpText(
      'after',
      `
Examples:
  boardfleet tokens create-provisioning --expires 30d --max-uses 20 --board rpi-4b --tag lab
  boardfleet tokens create-operator ci --role viewer --expires 12h
  boardfleet tokens list
  boardfleet tokens revoke tok-…`,
    );

  tokens
    .command('create-provisioning')
    .description('Create a fleet provisioning token; agents started with it register themselves')
    .option('--name <name>', 'what the token is for', 'fleet')
    .option('--expires <duration>', 'stop accepting it after this long: 90m, 12h, 30d')
    .option('--max-uses <n>', 'register at most this many devices with it')
    .option('--board <board>', 'every device it registers gets this board, and no other')
    .option('--tag <tag>', 'every device it registers gets this tag, and no others (repeatable)', collect, [])
    .option('--tags <tags>', 'the same as --tag, comma-separated')
    .option('--json', 'machine-readable output')
    .action(
      async (options: {
        name: string;
        expires?: string;
        maxUses?: string;
        board?: string;
        tag: string[];
        tags?: string;
        json?: boolean;
      }) => {
        const tags = [...options.tag, ...(options.tags?.split(',').map((tag) => tag.trim()) ?? [])].filter(
          Boolean,
        );
        const maxUses = positiveInteger('--max-uses', options.maxUses);
        const api = ApiClient.fromEnvironment();
        const created = await api.request<CreatedProvisioningToken>('POST', '/api/v1/provisioning-tokens', {
          name: options.name,
          ...expiresIn(options.expires),
          ...(maxUses === undefined ? {} : { maxUses }),
          ...(options.board ? { board: options.board } : {}),
          ...(tags.length > 0 ? { tags } : {}),
        });
        if (options.json) return printJson(created);
        process.stdout.write(
          `Provisioning token ${created.id}: ${created.token}\n` +
            `It pins the fleet CA (sha256 ${created.caFingerprint}): agents verify the server by it.\n` +
            `Keep it in a file only the agent can read (TOKEN_FILE) and start agents with:\n` +
            `  boardfleet agent --server ${created.serverUrl} --provisioning-token-file TOKEN_FILE --name NAME\n`,
        );
      },
    );

  tokens
    .command('create-operator <name>')
    .description('Create an operator API token (admin only)')
    .option('--role <role>', 'admin, operator or viewer', 'operator')
    .option('--expires <duration>', 'stop accepting it after this long: 90m, 12h, 30d')
    .option('--json', 'machine-readable output')
    .action(async (name: string, options: { role: string; expires?: string; json?: boolean }) => {
      const created = await ApiClient.fromEnvironment().request<CreatedOperatorToken>(
        'POST',
        '/api/v1/operator-tokens',
        { name, role: options.role, ...expiresIn(options.expires) },
      );
      if (options.json) return printJson(created);
      const expiry = created.expiresAt === null ? '' : `, expires ${formatTime(created.expiresAt)} UTC`;
      process.stdout.write(`Operator token ${created.id} (${options.role}${expiry}): ${created.token}\n`);
    });

  tokens
    .command('list')
    .description('List operator and provisioning tokens with their state and uses; never their secrets')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      const { tokens: list } = await ApiClient.fromEnvironment().request<TokenList>('GET', '/api/v1/tokens');
      if (options.json) return printJson(list);
      printTable(list.map(tokenRow), [
        'id',
        'kind',
        'name',
        'role',
        'state',
        'created',
        'expires',
        'uses',
        'fixes',
      ]);
    });

  tokens
    .command('revoke <id>')
    .description('Revoke a token: it, and dashboard sessions opened with it, stop at once')
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { json?: boolean }) => {
      const revoked = await ApiClient.fromEnvironment().request<TokenInfo>(
        'DELETE',
        `/api/v1/tokens/${encodeURIComponent(id)}`,
      );
      if (options.json) return printJson(revoked);
      process.stdout.write(`Revoked ${revoked.kind} token ${revoked.id} (${revoked.name})\n`);
    });
}
