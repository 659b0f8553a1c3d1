import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import type { Command } from 'commander';
import { type BuildInput, buildFirmware } from '../../arduino/build/build-firmware.ts';
import { formatSizeReport } from '../../arduino/build/size-report.ts';
import { printJson } from '../output.ts';

export function register(program: Command): void {
  program
    .command('build <target>')
    .description(
      'Build a firmware recipe (e.g. "firmata") or an Arduino sketch (.ino or its folder) into .hex and .elf',
    )
    .requiredOption('--board <board>', 'board to build for, e.g. uno')
    .option('--out <dir>', 'output directory (default: build/<name>/<board>)')
    .option('--json', 'machine-readable output')
    .action(async (target: string, options: { board: string; out?: string; json?: boolean }) => {
      const input: BuildInput = (await isSketch(target)) ? { sketchPath: target } : { recipe: target };
      const result = await buildFirmware({
        ...input,
        board: options.board,
        ...(options.out ? { outDir: options.out } : {}),
        onStep: options.json ? undefined : (step) => process.stderr.write(`  ${step}…\n`),
      });
      if (options.json) return printJson(result);
      if (result.warnings) process.stderr.write(`${result.warnings}\n`);
      process.stdout.write(
        `Built ${result.name} for ${result.board} in ${(result.durationMs / 1000).toFixed(1)} s, into ${result.outDir}\n` +
          `  hex:  ${result.hexPath}\n` +
          `  elf:  ${result.elfPath}\n` +
          `  sha256 (hex): ${result.hexSha256}\n` +
          `  size: ${formatSizeReport(result.size)}\n`,
      );
    });
}

/** A .ino file or a folder holding one is a sketch; anything else names a recipe. */
async function isSketch(target: string): Promise<boolean> {
  if (extname(target) === '.ino') return true;
  try {
    return (await stat(target)).isDirectory() && !(await stat(`${target}/recipe.yaml`).catch(() => null));
  } catch {
    return false;
  }
}
