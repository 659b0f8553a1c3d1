/**
 * TUF keys and roots as files on an operator's machine: a private key (PKCS#8 PEM, readable by
 * its owner only) beside its public half (SPKI PEM), and a root document being signed.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomically } from '../lib/atomic-file.ts';
import { BoardfleetError } from '../protocol/errors.ts';
import { type TufKey, type TufRoot, tufRootSchema } from '../protocol/tuf/metadata.ts';
import { generateTufKey, keyIdOf, privateKeyPem, readPrivateKey, tufKeyOf } from '../protocol/tuf/signing.ts';

const PRIVATE_KEY_MODE = 0o600;
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new BoardfleetError(
      'invalid-arguments',
      `cannot read ${what} ${path}: ${(error as Error).message}`,
    );
  }
}

/** Refuses to write over a file: a key or a root collecting signatures would be lost. */
export function refuseExisting(paths: string[]): void {
  const existing = paths.find((path) => existsSync(path));
  if (existing)
    throw new BoardfleetError(
      'invalid-arguments',
      `${existing} exists already: move it away or choose another name`,
    );
}

export interface KeyFiles {
  keyPath: string;
  publicPath: string;
  keyId: string;
  key: KeyObject;
}

/** Paths of key `name` in `directory`, checked to be free. */
export function keyFilePaths(directory: string, name: string): { keyPath: string; publicPath: string } {
  if (!KEY_NAME.test(name))
    throw new BoardfleetError(
      'invalid-arguments',
      `key name ${name}: use letters, digits, . _ - (up to 64), as in alice or root-1`,
    );
  const paths = { keyPath: join(directory, `${name}.key`), publicPath: join(directory, `${name}.pub`) };
  refuseExisting([paths.keyPath, paths.publicPath]);
  return paths;
}

/** Makes an ed25519 key and writes NAME.key (owner only) and NAME.pub into `directory`. */
export function writeNewKey(directory: string, name: string): KeyFiles {
  const { keyPath, publicPath } = keyFilePaths(directory, name);
  const key = generateTufKey();
  writeFileAtomically(keyPath, privateKeyPem(key), { mode: PRIVATE_KEY_MODE });
  writeFileAtomically(publicPath, createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString());
  return { keyPath, publicPath, keyId: keyIdOf(tufKeyOf(key)), key };
}

export function readPrivateKeyFile(path: string): KeyObject {
  return readPrivateKey(readText(path, 'key file'), path);
}

/** The public TUF key in a .pub file (or the public half of a .key file). */
export function readPublicKeyFile(path: string): TufKey {
  const text = readText(path, 'key file');
  let key: KeyObject;
  try {
    key = createPublicKey(text);
  } catch (error) {
    throw new BoardfleetError(
      'invalid-arguments',
      `${path} is not a key in PEM: ${(error as Error).message}`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new BoardfleetError(
      'invalid-arguments',
      `${path} is an ${key.asymmetricKeyType} key; TUF keys here are ed25519`,
    );
  return tufKeyOf(key);
}

export function readRootFile(path: string): TufRoot {
  let json: unknown;
  try {
    json = JSON.parse(readText(path, 'root'));
  } catch (error) {
    if (error instanceof BoardfleetError) throw error;
    throw new BoardfleetError('invalid-arguments', `${path} is not JSON: ${(error as Error).message}`);
  }
  const parsed = tufRootSchema.safeParse(json);
  if (!parsed.success)
    throw new BoardfleetError(
      'invalid-arguments',
      `${path} is not a TUF root: ${parsed.error.issues.map((issue) => `${issue.path.join('.') || '(file)'}: ${issue.message}`).join('; ')}`,
    );
  return parsed.data;
}

export function writeRootFile(path: string, root: TufRoot): void {
  writeFileAtomically(path, `${JSON.stringify(root, null, 2)}\n`);
}
