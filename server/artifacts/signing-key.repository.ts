import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';

const KEY_FILE = 'fleet-signing.key';

/**
 * The fleet's ed25519 signing key: generated on the first start into the data dir (0600), or an
 * operator-provided PKCS#8 PEM file. Agents get the public half when they are provisioned.
 */
export class SigningKeyRepository {
  private constructor(
    private readonly privateKey: KeyObject,
    readonly publicKeyPem: string,
    readonly source: string,
  ) {}

  static load(dataDir: string, operatorKeyPath: string | null): SigningKeyRepository {
    const path = operatorKeyPath ?? join(dataDir, KEY_FILE);
    if (!operatorKeyPath && !existsSync(path)) {
      const { privateKey } = generateKeyPairSync('ed25519');
      writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(readFileSync(path));
    } catch (error) {
      throw new BoardfleetError(
        'invalid-signing-key',
        `cannot read the fleet signing key ${path}: ${(error as Error).message}`,
      );
    }
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new BoardfleetError(
        'invalid-signing-key',
        `the fleet signing key ${path} is ${privateKey.asymmetricKeyType}, not ed25519`,
      );
    }
    const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
    return new SigningKeyRepository(privateKey, publicKeyPem, path);
  }

  sign(text: string): string {
    return sign(null, Buffer.from(text), this.privateKey).toString('base64');
  }
}
