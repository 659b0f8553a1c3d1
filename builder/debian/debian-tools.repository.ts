import { spawn } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import { locateHostTool } from '../../lib/host-tools.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

/** Each tool and the Debian package that brings it, for an error a person can act on. */
export const DEBIAN_TOOL_PACKAGES = {
  gpgv: 'gpgv',
  xz: 'xz-utils',
  'dpkg-deb': 'dpkg',
} as const;

export type DebianTool = keyof typeof DEBIAN_TOOL_PACKAGES;

/** One signature gpgv accepted, by the key that made it. */
export interface GoodSignature {
  keyId: string;
  fingerprint: string;
  userId: string;
}

export interface VerifiedText {
  /** The signed text only, as gpgv recovered it: anything outside the signature is dropped. */
  text: string;
  signatures: GoodSignature[];
}

/** Wraps gpgv, xz and dpkg-deb; the only place the Debian client runs child processes. */
export class DebianTools {
  /** `searchPath` overrides PATH, which lets a test show what happens without a tool. */
  constructor(private readonly searchPath = process.env.PATH ?? '') {}

  /**
   * Checks a clearsigned file (InRelease) against `keyring` and returns the signed text. At
   * least one good signature by a valid key in the keyring is needed, as apt does, and any bad
   * one refuses the file. `label` (the URL) names the file in errors.
   */
  async verifyClearsigned(path: string, keyring: string, label: string): Promise<VerifiedText> {
    try {
      await access(keyring);
    } catch {
      throw new BoardfleetError(
        'archive-keyring-missing',
        `the keyring ${keyring} does not exist: install it with "sudo apt-get install debian-archive-keyring" or pass another keyring`,
      );
    }
    await refuseUnlessOneClearsignedMessage(path, label);
    // Status lines go to fd 3 so they never mix with the signed text (stdout) or messages (stderr).
    const run = await this.run(
      'gpgv',
      ['--status-fd', '3', '--output', '-', '--keyring', keyring, path],
      ['ignore', 'pipe', 'pipe', 'pipe'],
    );
    const status = run.outputs[3] ?? '';
    const signatures: GoodSignature[] = [];
    const bad: string[] = [];
    const unusable: string[] = [];
    let pending: { keyId: string; userId: string } | undefined;
    for (const line of status.split('\n')) {
      const [tag, word, ...rest] = line.replace(/^\[GNUPG:\] /, '').split(' ');
      if (tag === 'GOODSIG') pending = { keyId: word ?? '', userId: rest.join(' ') };
      else if (tag === 'VALIDSIG' && pending) {
        signatures.push({ ...pending, fingerprint: word ?? '' });
        pending = undefined;
      } else if (tag === 'BADSIG') bad.push(`${word} (${rest.join(' ')})`);
      // Like apt: a signature by an expired, revoked or unknown key does not count, but does not refuse the file.
      else if (tag === 'EXPKEYSIG' || tag === 'EXPSIG') unusable.push(`${word} (expired)`);
      else if (tag === 'REVKEYSIG') unusable.push(`${word} (revoked)`);
      else if (tag === 'NO_PUBKEY') unusable.push(word ?? '');
    }
    if (bad.length > 0) {
      throw new BoardfleetError(
        'archive-signature',
        `${label} has a bad OpenPGP signature from ${bad.join(', ')}: it was changed after it was signed, refusing it`,
      );
    }
    if (signatures.length === 0) {
      const why =
        unusable.length > 0
          ? `it is signed only by keys not in ${keyring} or no longer valid (${unusable.join(', ')})`
          : `gpgv found no signature in it (${(run.outputs[2] ?? '').trim().split('\n').pop() ?? 'no output'})`;
      throw new BoardfleetError('archive-signature', `${label} cannot be trusted: ${why}`);
    }
    return { text: run.outputs[1] ?? '', signatures };
  }

  /** `xz -dc file`, as a stream; a broken file fails the stream with xz's message. */
  decompressXz(path: string): Readable {
    return this.stream('xz', ['-dc', path], `decompressing ${path}`);
  }

  /** The data tarball of a .deb, uncompressed, as a stream (`dpkg-deb --fsys-tarfile`). */
  fsysTarfile(debPath: string): Readable {
    return this.stream('dpkg-deb', ['--fsys-tarfile', debPath], `reading ${debPath}`);
  }

  private spawnTool(executable: string, args: string[], stdio: ('ignore' | 'pipe')[]) {
    return spawn(executable, args, {
      stdio,
      // A fixed locale keeps messages (and the parsed status lines) stable.
      env: { ...process.env, PATH: this.searchPath, LC_ALL: 'C' },
    });
  }

  private async run(
    tool: DebianTool,
    args: string[],
    stdio: ('ignore' | 'pipe')[],
  ): Promise<{ code: number | null; outputs: Record<number, string> }> {
    const executable = locateHostTool(tool, this.searchPath);
    if (!executable) throw missingTool(tool);
    const child = this.spawnTool(executable, args, stdio);
    return new Promise((resolve, reject) => {
      const chunks: Record<number, Buffer[]> = {};
      child.stdio.forEach((stream, fd) => {
        if (!stream || fd === 0) return;
        chunks[fd] = [];
        (stream as Readable).on('data', (chunk: Buffer) => chunks[fd]?.push(chunk));
      });
      child.on('error', reject);
      child.on('close', (code) => {
        const outputs: Record<number, string> = {};
        for (const [fd, parts] of Object.entries(chunks))
          outputs[Number(fd)] = Buffer.concat(parts).toString('utf8');
        resolve({ code, outputs });
      });
    });
  }

  private stream(tool: DebianTool, args: string[], doing: string): Readable {
    const executable = locateHostTool(tool, this.searchPath);
    // destroy() reports the error on the next tick, once the caller listens.
    if (!executable) return new PassThrough().destroy(missingTool(tool));
    const output = new PassThrough({ highWaterMark: 1 << 20 });
    const child = this.spawnTool(executable, args, ['ignore', 'pipe', 'pipe']);
    const stderr: Buffer[] = [];
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.stdout?.pipe(output, { end: false });
    child.on('error', (error) => output.destroy(error));
    child.on('close', (code, signal) => {
      if (code === 0) {
        output.end();
        return;
      }
      if (output.destroyed) return;
      const message = Buffer.concat(stderr).toString('utf8').trim() || `exit ${code ?? signal}`;
      output.destroy(new BoardfleetError('archive-tool-failed', `${tool} failed ${doing}: ${message}`));
    });
    // A reader that gives up early must not leave the tool running.
    output.on('close', () => {
      if (child.exitCode === null && child.signalCode === null) child.kill();
    });
    return output;
  }
}

/**
 * gpgv verifies the first signed block and tolerates text around it; like apt, accept only a
 * file that is one clearsigned message and nothing else, so no unsigned text can ride along.
 */
async function refuseUnlessOneClearsignedMessage(path: string, label: string): Promise<void> {
  const text = (await readFile(path)).toString('latin1');
  const count = (marker: string) => text.split(marker).length - 1;
  const wellFormed =
    text.startsWith('-----BEGIN PGP SIGNED MESSAGE-----\n') &&
    count('-----BEGIN PGP SIGNED MESSAGE-----') === 1 &&
    count('-----BEGIN PGP SIGNATURE-----') === 1 &&
    count('-----END PGP SIGNATURE-----') === 1 &&
    text.trimEnd().endsWith('-----END PGP SIGNATURE-----');
  if (!wellFormed) {
    throw new BoardfleetError(
      'archive-signature',
      `${label} is not one clearsigned message (text outside the signature, or no signature at all): refusing it`,
    );
  }
}

function missingTool(tool: DebianTool): BoardfleetError {
  return new BoardfleetError(
    'tool-missing',
    `${tool} is not installed: install it with "sudo apt-get install ${DEBIAN_TOOL_PACKAGES[tool]}"`,
  );
}
