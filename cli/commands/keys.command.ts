import { resolve } from 'node:path';
import { Argument, type Command } from 'commander';
import type { RotatedOnlineKey, TufOnlineKey, TufStatus } from '../../protocol/api/tuf.ts';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';
import { ONLINE_ROLES, type OnlineRole, type TufKey, type TufRoot } from '../../protocol/tuf/metadata.ts';
import { draftRoot } from '../../protocol/tuf/root-draft.ts';
import { keyIdOf, keysThatSigned, signatureBy, tufKeyOf, withSignature } from '../../protocol/tuf/signing.ts';
import { ApiClient } from '../api-client.ts';
import { formatTime, printJson, printTable } from '../output.ts';
import {
  keyFilePaths,
  readPrivateKeyFile,
  readPublicKeyFile,
  readRootFile,
  refuseExisting,
  writeNewKey,
  writeRootFile,
} from '../tuf-key-files.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const collect = (value: string, previous: string[]) => [...previous, value];

function wholeNumber(option: string, value: string, min: number, max: number): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < min || number > max)
    throw new BoardfleetError(
      'invalid-option',
      `${option} ${value}: expected a whole number from ${min} to ${max}`,
    );
  return number;
}

const expiresAt = (days: string) => Date.now() + wholeNumber('--expires-days', days, 1, 3650) * DAY_MS;

/** The key each online role gets in the next root: a rotation's pending key, else the active one. */
function nextOnlineKeys(status: TufStatus): Record<OnlineRole, TufKey> {
  const key = (role: OnlineRole) => (status.onlineKeys[role].pending ?? status.onlineKeys[role].active).key;
  return { targets: key('targets'), snapshot: key('snapshot'), timestamp: key('timestamp') };
}

const statusOf = (api: ApiClient) => api.request<TufStatus>('GET', '/api/v1/tuf/online-keys');
const when = (tufTime: string) => `${formatTime(Date.parse(tufTime))} UTC`;

function requireRoot(status: TufStatus): TufRoot {
  if (!status.root)
    throw new BoardfleetError(
      'invalid-arguments',
      'the fleet has no root yet: boardfleet keys init makes the first',
    );
  return status.root;
}

/** How many of the root's own root keys have signed it, out of how many it needs. */
function ownSignatures(root: TufRoot): string {
  const { threshold } = root.signed.roles.root;
  return `${keysThatSigned(root, root.signed.roles.root, root.signed.keys).length} of its root keys have signed (it needs ${threshold})`;
}

export function register(program: Command): void {
  const keys = program
    .command('keys')
    .description("The fleet's TUF keys: the offline root ceremony and the server's online keys")
    .addHelpText(
      'after',
      `
The root keys are files held by people, offline: the server never holds one. A new root is
drafted from the server's, signed by a threshold of the current root's keys (and of its own),
and published; devices follow the chain of roots.

Examples:
  boardfleet keys init --holders 3 --threshold 2 --out root-keys
  boardfleet keys status
  boardfleet keys rotate timestamp
  boardfleet keys draft-root --out root.draft.json
  boardfleet keys sign root.draft.json --key /media/usb/alice.key
  boardfleet keys publish root.draft.json`,
    );

  keys
    .command('generate <name>')
    .description('Make an ed25519 key pair: NAME.key (private, readable by you only) and NAME.pub')
    .option('--out <dir>', 'where to write them', '.')
    .action((name: string, options: { out: string }) => {
      const written = writeNewKey(resolve(options.out), name);
      process.stdout.write(
        `Key ${written.keyId}\n  private: ${written.keyPath} (keep it offline, with its holder only)\n  public:  ${written.publicPath}\n`,
      );
    });

  keys
    .command('init')
    .description(
      "The first key ceremony, on one machine: makes the holders' root keys, signs root version 1, publishes it",
    )
    .option('--holders <n>', 'how many people hold a root key', '3')
    .option('--threshold <k>', 'how many of them must sign the next root', '2')
    .option('--out <dir>', 'where to write the root keys', 'root-keys')
    .option('--expires-days <n>', 'days until the root expires', '365')
    .action(async (options: { holders: string; threshold: string; out: string; expiresDays: string }) => {
      const holders = wholeNumber('--holders', options.holders, 1, 20);
      const threshold = wholeNumber('--threshold', options.threshold, 1, holders);
      const expires = expiresAt(options.expiresDays);
      const directory = resolve(options.out);
      const names = Array.from({ length: holders }, (_, index) => `root-${index + 1}`);
      for (const name of names) keyFilePaths(directory, name);
      refuseExisting([resolve(directory, '1.root.json')]);
      const api = ApiClient.fromEnvironment();
      const status = await statusOf(api);
      if (status.root)
        throw new BoardfleetError(
          'invalid-arguments',
          `the fleet already has root version ${status.root.signed.version}: change it with boardfleet keys draft-root, sign and publish`,
        );
      const written = names.map((name) => writeNewKey(directory, name));
      const signed = draftRoot({
        previous: null,
        rootKeys: written.map((file) => tufKeyOf(file.key)),
        threshold,
        onlineKeys: nextOnlineKeys(status),
        expiresAt: expires,
      });
      const root: TufRoot = { signed, signatures: written.map((file) => signatureBy(signed, file.key)) };
      writeRootFile(resolve(directory, '1.root.json'), root);
      await api.request<TufStatus>('POST', '/api/v1/tuf/root', root).catch((error: unknown) => {
        throw new BoardfleetError(
          isBoardfleetError(error) ? error.code : 'api-error',
          `${(error as Error).message}; nothing was published: delete the new root-*.key, root-*.pub and 1.root.json in ${directory} before trying again`,
          { cause: error },
        );
      });
      process.stdout.write(
        `Published root version 1: ${threshold} of ${holders} root keys must sign the next root; it expires ${when(signed.expires)}.\n` +
          `Root keys, one per holder:\n` +
          written.map((file) => `  ${file.keyPath}  (key ${file.keyId})\n`).join('') +
          `Move each .key file to its holder's offline storage, apart from the others, and delete it from this machine:\n` +
          `any ${threshold} of them can replace the fleet's root of trust. The .pub files and 1.root.json may stay.\n`,
      );
    });

  keys
    .command('draft-root')
    .description(
      "Draft the next root from the server's, unsigned: the same root keys unless given, the server's online keys",
    )
    .option('--root-key <file>', "a root key's .pub file (repeatable): replaces the root keys", collect, [])
    .option('--threshold <k>', 'how many root keys must sign the root after this one (default: as now)')
    .option('--expires-days <n>', 'days until it expires', '365')
    .option('--out <file>', 'where to write the draft', 'root.draft.json')
    .action(async (options: { rootKey: string[]; threshold?: string; expiresDays: string; out: string }) => {
      const out = resolve(options.out);
      refuseExisting([out]);
      const rootKeys = options.rootKey.length > 0 ? options.rootKey.map(readPublicKeyFile) : null;
      const status = await statusOf(ApiClient.fromEnvironment());
      const current = requireRoot(status).signed;
      const signed = draftRoot({
        previous: current,
        rootKeys,
        threshold:
          options.threshold === undefined ? null : wholeNumber('--threshold', options.threshold, 1, 1000),
        onlineKeys: nextOnlineKeys(status),
        expiresAt: expiresAt(options.expiresDays),
      });
      writeRootFile(out, { signed, signatures: [] });
      const pending = ONLINE_ROLES.filter((role) => status.onlineKeys[role].pending);
      const old = current.roles.root;
      const next = signed.roles.root;
      const sameKeys = old.keyids.join() === next.keyids.join();
      process.stdout.write(
        `Drafted root version ${signed.version} in ${out}: ${next.keyids.length} root key(s), threshold ${next.threshold}, expires ${when(signed.expires)}` +
          (pending.length > 0 ? `; the rotated ${pending.join(', ')} key(s) take over.\n` : '.\n') +
          (sameKeys
            ? `Sign it with ${Math.max(old.threshold, next.threshold)} of the root keys`
            : `Sign it with ${old.threshold} of version ${current.version}'s root keys and ${next.threshold} of the new ones`) +
          `, each on its holder's machine (boardfleet keys sign ${options.out} --key HOLDER.key),\n` +
          `then publish it: boardfleet keys publish ${options.out}\n`,
      );
    });

  keys
    .command('sign <file>')
    .description('Add your signature to a root (works offline: no server needed)')
    .requiredOption('--key <file>', 'your private key file (.key)')
    .action((file: string, options: { key: string }) => {
      const key = readPrivateKeyFile(options.key);
      const root = withSignature(readRootFile(file), key);
      writeRootFile(file, root);
      const keyId = keyIdOf(tufKeyOf(key));
      const outsider = root.signed.roles.root.keyids.includes(keyId)
        ? ''
        : ` Key ${keyId} is not one of its root keys: it counts only toward the previous root's threshold.`;
      process.stdout.write(
        `Signed root version ${root.signed.version} in ${file} with key ${keyId}: ${ownSignatures(root)}.${outsider}\n`,
      );
    });

  keys
    .command('publish <file>')
    .description('Upload a signed root: the server checks its version, both thresholds and its online keys')
    .action(async (file: string) => {
      const root = readRootFile(file);
      const status = await ApiClient.fromEnvironment().request<TufStatus>('POST', '/api/v1/tuf/root', root);
      const published = requireRoot(status).signed;
      process.stdout.write(
        `Published root version ${published.version}; it expires ${when(published.expires)}. Devices follow it at their next check.\n`,
      );
    });

  keys
    .command('rotate')
    .description('Make a new key for an online role; it signs once a root names it')
    .addArgument(new Argument('<role>', 'the online role').choices(ONLINE_ROLES))
    .action(async (role: OnlineRole) => {
      const api = ApiClient.fromEnvironment();
      const rotated = await api.request<RotatedOnlineKey>('POST', '/api/v1/tuf/online-keys/rotate', { role });
      const { threshold } = requireRoot(await statusOf(api)).signed.roles.root;
      process.stdout.write(
        `${rotated.created ? 'New' : 'Already'} pending ${role} key ${rotated.pending.keyId}: the current key signs until a root names it.\n` +
          `Next: boardfleet keys draft-root --out root.draft.json; sign it with ${threshold} of the root keys\n` +
          `(boardfleet keys sign root.draft.json --key HOLDER.key); boardfleet keys publish root.draft.json\n`,
      );
    });

  keys
    .command('status')
    .description('The root version, its expiry and threshold, and the key ids of every role')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      const status = await statusOf(ApiClient.fromEnvironment());
      if (options.json) return printJson(status);
      printStatus(status);
    });
}

function printStatus(status: TufStatus): void {
  const root = status.root?.signed;
  process.stdout.write(
    root
      ? `Root version ${root.version}, expires ${when(root.expires)}; ${root.roles.root.threshold} of ${root.roles.root.keyids.length} root keys must sign the next root.\n`
      : 'No root yet: boardfleet keys init makes the first, naming these online keys.\n',
  );
  const keyIdOrDash = (key: TufOnlineKey | null) => key?.keyId ?? '-';
  printTable(
    [
      ...(root
        ? [
            {
              role: 'root',
              keys: root.roles.root.keyids.join(','),
              threshold: String(root.roles.root.threshold),
              pending: '-',
              published: '-',
            },
          ]
        : []),
      ...ONLINE_ROLES.map((role) => {
        const published = status.published[role];
        return {
          role,
          keys: keyIdOrDash(status.onlineKeys[role].active),
          threshold: '1',
          pending: keyIdOrDash(status.onlineKeys[role].pending),
          published: published ? `v${published.version}, expires ${when(published.expires)}` : '-',
        };
      }),
    ],
    ['role', 'keys', 'threshold', 'pending', 'published'],
  );
}
