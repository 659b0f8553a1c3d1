// `npm run bench -- NAME [flags]` runs bench/NAME.bench.ts; with no name it lists them.
// Each benchmark prints its figures and the baseline it is compared with, in the same run.
import { readdirSync } from 'node:fs';
import { BenchUsageError } from './bench-args.ts';

const available = readdirSync(new URL('.', import.meta.url))
  .filter((file) => file.endsWith('.bench.ts'))
  .map((file) => file.replace(/\.bench\.ts$/, ''))
  .sort();

const [name, ...args] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <${available.join('|')}> [flags]\n`);
  process.exit(name ? 1 : 0);
}
const benchmark = (await import(`./${name}.bench.ts`)) as { run(args: string[]): Promise<void> };
try {
  await benchmark.run(args);
} catch (error) {
  if (!(error instanceof BenchUsageError)) throw error;
  process.stderr.write(`${name}: ${error.message}\n`);
  process.exitCode = 1;
}
