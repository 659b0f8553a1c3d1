import { readFileSync } from 'node:fs';
import { Command } from 'commander';
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
  () => import('./commands/artifact.command.ts'),
  () => import('./commands/rollout.command.ts'),
  () => import('./commands/build.command.ts'),
  () => import('./commands/probe.command.ts'),
  () => import('./commands/boards.command.ts'),
  () => import('./commands/ports.command.ts'),
  () => import('./commands/doctor.command.ts'),
  () => import('./commands/bench.command.ts'),
  () => import('./commands/flash.command.ts'),
  () => import('./commands/run-image.command.ts'),
];

export async function main(argv: string[]): Promise<void> {
  // `boardfleet devices list | head`: a closed pipe ends the command quietly, as Unix tools do.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
  const program = new Command('boardfleet')
    .description('Fleet manager for maker and embedded devices')
    .version(packageJson.version)
    // Options after a sub-command are that sub-command's (`artifact push --version 1.2.0`).
    .enablePositionalOptions()
    .showHelpAfterError();
  for (const load of commandModules) {
    (await load()).register(program);
  }
  try {
    await program.parseAsync(argv);
  } catch (error) {
    process.exitCode = reportCliError(error);
  }
}
