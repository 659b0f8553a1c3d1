import { join } from 'node:path';

const PARALLEL_COMPILES = 2;

/** A cross toolchain as the compiler sees it: runs one of its tools in a folder. */
export interface ToolchainRunner<Tool extends string> {
  run(tool: Tool, args: string[], cwd: string): Promise<{ stdout: string; stderr: string }>;
}

/** One source file to compile into one object, by the toolchain's `compiler`. */
export interface ObjectUnit<Tool extends string> {
  compiler: Tool;
  /** Relative to `cwd`, so no absolute path reaches the object (__FILE__, symbol names). */
  source: string;
  cwd: string;
  objectName: string;
  flags: string[];
}

/** Compiles units into `<outDir>/obj`, at most PARALLEL_COMPILES at a time over all callers, keeping the compiler's warnings. */
export class ObjectCompiler<Tool extends string> {
  readonly warnings: string[] = [];
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    readonly toolchain: ToolchainRunner<Tool>,
    readonly outDir: string,
    private readonly onStep?: (step: string) => void,
  ) {}

  /** The object files, in the order of the units. */
  async compileAll(units: Array<ObjectUnit<Tool>>, step: string): Promise<string[]> {
    this.onStep?.(step);
    return firstFailure(units.map((unit) => this.inSlot(() => this.compile(unit))));
  }

  private async compile(unit: ObjectUnit<Tool>): Promise<string> {
    const objectPath = join(this.outDir, 'obj', unit.objectName);
    const run = await this.toolchain.run(
      unit.compiler,
      [...unit.flags, '-c', unit.source, '-o', objectPath],
      unit.cwd,
    );
    if (run.stderr.trim()) this.warnings.push(run.stderr.trim());
    return objectPath;
  }

  private async inSlot<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= PARALLEL_COMPILES) await new Promise<void>((start) => this.waiting.push(start));
    this.running++;
    try {
      return await work();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

/** Like Promise.all, but waits for every promise to settle, then throws the first failure in order. */
export async function firstFailure<T>(promises: Array<Promise<T>>): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((outcome) => outcome.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((outcome) => (outcome as PromiseFulfilledResult<T>).value);
}
