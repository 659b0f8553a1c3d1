// `npm run bench -- cli [--runs 10] [--devices 20]`: how long the CLI takes from spawn to exit.
// `boardfleet --help` and `devices list` (against a local server) from the compiled build, beside
// the same through tsx (how every command ran before the build, the baseline), and the floor in the
// same run: `node -e 0`, a Node.js that starts and does nothing. Targets: --help ≤ 0.3 s,
// devices list ≤ 0.5 s. Builds the CLI first when the build is missing or stale.
import { execFile, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { freshBuild } from '../cli/compiled-cli.js';
import { registerBenchDevices, startBenchServer } from './bench-server.ts';
import { percentile } from './stats.ts';

const execFileAsync = promisify(execFile);
const ROOT = new URL('../', import.meta.url);
const CLI = fileURLToPath(new URL('cli/boardfleet.js', ROOT));

interface Figure {
  label: string;
  args: string[];
  env: Record<string, string>;
  targetMs?: number;
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { runs: { type: 'string', default: '10' }, devices: { type: 'string', default: '20' } },
  });
  const runs = Number(values.runs);
  if (!freshBuild(ROOT)) {
    process.stdout.write('building the CLI (npm run build:cli)…\n');
    execFileSync(process.execPath, [fileURLToPath(new URL('cli/build.mjs', ROOT))], { stdio: 'inherit' });
  }

  const server = await startBenchServer();
  try {
    await registerBenchDevices(server, Number(values.devices), 'rpi-4b');
    const api = { BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken };
    const tsx = { BOARDFLEET_CLI_SOURCES: '1' };
    const figures: Figure[] = [
      { label: 'node -e 0 (floor)', args: ['-e', '0'], env: {} },
      { label: 'boardfleet --help', args: [CLI, '--help'], env: {}, targetMs: 300 },
      { label: 'boardfleet --help through tsx', args: [CLI, '--help'], env: tsx },
      { label: 'boardfleet devices list', args: [CLI, 'devices', 'list'], env: api, targetMs: 500 },
      {
        label: 'boardfleet devices list through tsx',
        args: [CLI, 'devices', 'list'],
        env: { ...api, ...tsx },
      },
    ];
    process.stdout.write(
      `CLI start-up benchmark: ${runs} runs of each, interleaved (so machine load hits all alike); ` +
        `devices list against a local server with ${values.devices} devices; Node.js ${process.version}\n\n`,
    );
    const times = new Map<Figure, number[]>(figures.map((figure) => [figure, []]));
    for (let round = 0; round < runs; round++) {
      for (const figure of figures) times.get(figure)?.push(await timeProcess(figure));
    }
    // A source edited meanwhile sends the "compiled" runs through tsx: those figures would lie.
    if (!freshBuild(ROOT))
      throw new Error('a source changed during the benchmark, so the build went stale: run it again');

    const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    // The fastest run is what a quiet machine gives; p50 and p95 show what load adds.
    process.stdout.write(
      `${'figure'.padEnd(40)}${'min'.padEnd(10)}${'p50'.padEnd(10)}${'p95'.padEnd(10)}target\n`,
    );
    for (const figure of figures) {
      const measured = times.get(figure) ?? [];
      const p50 = percentile(measured, 50);
      const verdict =
        figure.targetMs === undefined
          ? ''
          : `≤ ${seconds(figure.targetMs)} ${p50 <= figure.targetMs ? 'met' : 'MISSED'} (p50)`;
      process.stdout.write(
        `${figure.label.padEnd(40)}${seconds(Math.min(...measured)).padEnd(10)}${seconds(p50).padEnd(10)}${seconds(percentile(measured, 95)).padEnd(10)}${verdict}\n`,
      );
    }
    process.stdout.write(
      '\nEach figure: spawn of `node …` until it exits, wall clock. "through tsx" is BOARDFLEET_CLI_SOURCES=1:\n' +
        'the TypeScript sources compiled on the fly, as cli/boardfleet.js ran every command before the build.\n',
    );
  } finally {
    await server.dispose();
  }
}

async function timeProcess(figure: Figure): Promise<number> {
  const started = performance.now();
  await execFileAsync(process.execPath, figure.args, { env: { ...process.env, ...figure.env } });
  return performance.now() - started;
}
