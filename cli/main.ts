import { readFileSync } from 'node:fs';
import { Command, Help } from 'commander';
import { reportCliError } from './cli-errors.ts';

const packageJson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Each sub-command lives in its own file under cli/commands and registers itself here. */
const commandModules: Array<() => Promise<{ register(program: Command): void }>> = [
  () => import('./commands/server.command.ts'),
  () => import('./commands/devices.command.ts'),
  () => import('./commands/agent.command.ts'),
  () => import('./commands/simulate.command.ts'),
  () => import('./commands/tokens.command.ts'),
  () => import('./commands/audit.command.ts'),
  () => import('./commands/keys.command.ts'),
  () => import('./commands/artifact.command.ts'),
  () => import('./commands/release.command.ts'),
  () => import('./commands/rollout.command.ts'),
  () => import('./commands/build.command.ts'),
  () => import('./commands/probe.command.ts'),
  () => import('./commands/repl.command.ts'),
  () => import('./commands/boards.command.ts'),
  () => import('./commands/ports.command.ts'),
  () => import('./commands/doctor.command.ts'),
  () => import('./commands/bench.command.ts'),
  () => import('./commands/flash.command.ts'),
  () => import('./commands/monitor.command.ts'),
  () => import('./commands/run-image.command.ts'),
  () => import('./commands/broker-config.command.ts'),
  () => import('./commands/logs.command.ts'),
  () => import('./commands/shell.command.ts'),
  () => import('./commands/config.command.ts'),
  () => import('./commands/webhooks.command.ts'),
];

/**
 * The top-level commands as `boardfleet --help` lists them, and the module that registers each.
 * The build (cli/build.mjs) writes it, so the compiled CLI loads only the module a command needs:
 * the others pull in serial ports, YAML, zod and the like, which `--help` has no use for.
 */
export interface CommandIndex {
  commands: Array<{ names: string[]; term: string; description: string; module: number }>;
}

/** Runs the CLI; without `index` (from the sources) it loads every command module. */
export async function main(argv: string[], index?: CommandIndex): Promise<void> {
  // `boardfleet devices list | head`: a closed pipe ends the command quietly, as Unix tools do.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
  const program = createProgram();
  const wanted = index ? moduleOfRequestedCommand(argv, index) : undefined;
  if (wanted !== undefined) await registerModule(program, wanted);
  else if (index) listIndexedCommands(program, index);
  else for (const module of commandModules.keys()) await registerModule(program, module);
  try {
    await program.parseAsync(argv);
  } catch (error) {
    process.exitCode = reportCliError(error);
  }
}

/** Loads every command module and sums up what each registers, for the build's index. */
export async function describeCommands(): Promise<CommandIndex> {
  const program = createProgram();
  const help = program.createHelp();
  const commands: CommandIndex['commands'] = [];
  for (const module of commandModules.keys()) {
    const before = program.commands.length;
    await registerModule(program, module);
    for (const command of program.commands.slice(before)) {
      commands.push({
        names: [command.name(), ...command.aliases()],
        term: help.subcommandTerm(command),
        description: help.subcommandDescription(command),
        module,
      });
    }
  }
  return { commands };
}

function createProgram(): Command {
  return (
    new Command('boardfleet')
      .description('Fleet manager for maker and embedded devices')
      .version(packageJson.version)
      // Options after a sub-command are that sub-command's (`artifact push --version 1.2.0`).
      .enablePositionalOptions()
      .showHelpAfterError()
  );
}

async function registerModule(program: Command, module: number): Promise<void> {
  const load = commandModules[module];
  if (!load) throw new Error(`no command module ${module}: the CLI build is out of date (npm run build:cli)`);
  (await load()).register(program);
}

/**
 * The module of the command named on the command line. It comes first, or after `help`: an
 * option before it (`--help devices`) is the program's, which then needs every command listed.
 */
function moduleOfRequestedCommand(argv: string[], index: CommandIndex): number | undefined {
  const [first, second] = argv.slice(2);
  const name = first === 'help' ? second : first;
  return index.commands.find((command) => command.names.includes(name ?? ''))?.module;
}

/** Commands as names and descriptions only, for the program's help and "did you mean". */
function listIndexedCommands(program: Command, index: CommandIndex): void {
  const terms = new Map<Command, string>();
  for (const { names, term, description } of index.commands) {
    const [name = '', ...aliases] = names;
    terms.set(program.command(name).aliases(aliases).description(description), term);
  }
  const standardHelp = new Help();
  program.configureHelp({
    subcommandTerm: (command) => terms.get(command) ?? standardHelp.subcommandTerm(command),
  });
}
