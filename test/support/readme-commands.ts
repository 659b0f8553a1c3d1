import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CLI } from './agent-process.ts';

export const README = fileURLToPath(new URL('../../README.md', import.meta.url));

/** Comment lines under a command: what it prints (`# →` and the lines indented under it), or a note. */
interface Commented {
  /** The README's line as written. */
  line: string;
  /** Output the README shows for it, one line each, without `# →` / `#`. */
  output: string[];
  /** Other comments: a trailing `# …` on the line, and `# …` lines that are not output. */
  notes: string[];
}

/** One line of a README shell block, in the form the walkthrough runs it. */
export type ReadmeStep =
  | (Commented & { kind: 'npm'; scripts: string[] })
  | (Commented & { kind: 'secret-file'; content: string; file: string })
  | (Commented & { kind: 'write-file'; content: string; file: string })
  | (Commented & { kind: 'tar'; args: string[] })
  | (Commented & { kind: 'boardfleet'; args: string[] });

/** The text of `## title` in README.md, up to the next `## ` heading. */
export function readmeSection(title: string, markdown = readFileSync(README, 'utf8')): string {
  const start = markdown.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README.md has no section "## ${title}"`);
  const end = markdown.indexOf('\n## ', start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

/** The ```sh blocks of a README section, in order, each as the steps a user types. */
export function shellBlocks(section: string): ReadmeStep[][] {
  const blocks = [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((match) => match[1] as string);
  return blocks.map((block) => {
    const steps: ReadmeStep[] = [];
    let inOutput = false;
    for (const line of block.split('\n')) {
      if (line.trim() === '') continue;
      const comment = /^#(.*)$/.exec(line)?.[1];
      if (comment === undefined) {
        steps.push(parseCommand(line));
        inOutput = false;
        continue;
      }
      const step = steps.at(-1);
      if (!step) throw new Error(`README shell block starts with a comment: ${line}`);
      // `# → text` is output; `#   text` indented under it continues that output.
      const arrow = /^ → (.*)$/.exec(comment)?.[1];
      if (arrow !== undefined || (inOutput && /^ {2,}\S/.test(comment))) {
        step.output.push((arrow ?? comment).trim());
        inOutput = true;
      } else {
        step.notes.push(comment.trim());
        inOutput = false;
      }
    }
    return steps;
  });
}

function parseCommand(written: string): ReadmeStep {
  const hash = written.search(/\s#\s/);
  const line = (hash < 0 ? written : written.slice(0, hash)).trim();
  const notes = hash < 0 ? [] : [written.slice(hash).replace(/^\s*#\s*/, '')];
  const commented = { line: written, output: [], notes };
  const secret = /^\(umask 077; echo '([^']*)' > (\S+)\)$/.exec(line);
  if (secret)
    return { ...commented, kind: 'secret-file', content: secret[1] as string, file: secret[2] as string };
  const file = /^echo '([^']*)' > (\S+)$/.exec(line);
  if (file) return { ...commented, kind: 'write-file', content: file[1] as string, file: file[2] as string };
  // Words, a whole word in single quotes taken as it is; anything else a shell would interpret
  // beyond splitting words is not something we can replay.
  const words = [...line.matchAll(/'([^']*)'|(\S+)/g)].map(([, quoted, bare]) => {
    if (bare !== undefined && /["'`$|;<>()\\]/.test(bare))
      throw new Error(`the walkthrough cannot run this README line: ${written}`);
    return quoted ?? (bare as string);
  });
  if (words[0] === 'npx' && words[1] === 'boardfleet')
    return { ...commented, kind: 'boardfleet', args: words.slice(2) };
  if (words[0] === 'tar') return { ...commented, kind: 'tar', args: words.slice(1) };
  const scripts = line.split('&&').map((part) => /^npm (\S+)$/.exec(part.trim())?.[1]);
  if (scripts.every((script) => script !== undefined)) return { ...commented, kind: 'npm', scripts };
  throw new Error(`the walkthrough cannot run this README line: ${written}`);
}

/** The kinds of value the README writes as `prefix…`: devices, secrets, tokens, artifacts, rollouts. */
const KINDS = ['dev-', 'bfd_', 'bfp_', 'art-', 'ro-'] as const;
type Kind = (typeof KINDS)[number];
const PLACEHOLDER = `(?:${KINDS.join('|')})[0-9a-z]*…`;
/** A value of its kind as printed: provisioning tokens carry the fleet CA's fingerprint after a dot. */
const valueOf = (kind: Kind) => `${kind}[A-Za-z0-9_-]+${kind === 'bfp_' ? '(?:\\.[0-9a-f]{64})?' : ''}`;

/**
 * The README's example values (`dev-3f9c…`, `bfd_…`, `art-5e1d…`…): each stands for the first
 * value of its kind an earlier command printed.
 */
export class Placeholders {
  private static readonly WRITTEN = new RegExp(`\\b(${KINDS.join('|')})[0-9a-z]*…`, 'g');
  private readonly values = new Map<string, string>();

  /** Remembers the first value of each kind in `text` that is not known yet. */
  learn(text: string): void {
    for (const kind of KINDS) {
      const found = new RegExp(`\\b${valueOf(kind)}`).exec(text)?.[0];
      if (found && !this.values.has(kind)) this.values.set(kind, found);
    }
  }

  value(kind: Kind): string {
    const value = this.values.get(kind);
    if (!value) throw new Error(`no command printed a ${kind}… value yet`);
    return value;
  }

  /** `text` with every placeholder replaced by its value. */
  fill(text: string): string {
    return text.replace(Placeholders.WRITTEN, (_written, kind: Kind) => this.value(kind));
  }
}

/**
 * Checks that `printed` has, in order, a line for each README output line: `…` placeholders match
 * any value of their kind, an aligned `(note)` at the end is an explanation and not output, and
 * `replacements` stand for what differs on purpose (ports).
 */
export function expectPrinted(
  expected: string[],
  printed: string,
  replacements: Array<[string, string]> = [],
) {
  const lines = printed.split('\n').map((line) => line.trim());
  let from = 0;
  for (const written of expected) {
    let text = written.replace(/\s{2,}\([^)]*\)$/, '');
    for (const [readme, actual] of replacements) text = text.split(readme).join(actual);
    const pattern = new RegExp(
      `^${text
        .split(new RegExp(`(${PLACEHOLDER})`))
        .map((part, index) =>
          index % 2 === 1
            ? valueOf(KINDS.find((kind) => part.startsWith(kind)) as Kind)
            : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
        )
        .join('')}$`,
    );
    const at = lines.findIndex((line, index) => index >= from && pattern.test(line));
    if (at < 0) throw new Error(`expected a line like the README's "${written}" in:\n${printed}`);
    from = at + 1;
  }
}

/** A long-running `boardfleet …` (an agent, the simulator) in the background, with its output kept. */
export interface BackgroundCommand {
  args: string[];
  child: ChildProcess;
  output(): string;
}

export function startBackground(args: string[], cwd: string, env: NodeJS.ProcessEnv): BackgroundCommand {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (data: Buffer) => (output += data.toString());
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('error', (error) => (output += `\nspawn failed: ${error.message}\n`));
  return { args, child, output: () => output };
}
