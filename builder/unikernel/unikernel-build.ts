import { randomBytes } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getVmBoard, type VmBoard } from '../../boards/board-catalogue.ts';
import {
  BUNDLE_FILES,
  type LaunchSpec,
  launchSpecSchema,
  type VmArchitecture,
} from '../../protocol/unikernel-image.ts';
import { bundleAgent } from '../agent-runtime/agent-bundle.ts';
import { fetchNodeRuntime, type NodeRuntime } from '../agent-runtime/node-runtime.repository.ts';
import type { BuildReporter, BuiltFile } from '../build-runner.ts';
import type { ResolvedPackage } from '../debian/debian-archive.repository.ts';
import { kernelVersionOf, moduleClosure } from '../debian/kernel-modules.ts';
import { compressImage } from '../disk/compress-image.ts';
import { writeCpioNewc } from '../disk/cpio-newc.ts';
import { sha256File } from '../disk/file-tree.ts';
import { ImageTools } from '../disk/image-tools.repository.ts';
import { tarHeader } from '../disk/update-payload.ts';
import { CrossCompiler } from '../native/cross-compiler.repository.ts';
import { bundleComponents, nodeRuntimeComponent, type SbomComponent, spdxDocument } from '../steps/sbom.ts';
import { buildStaticProgram } from '../native/static-program.ts';
import {
  builderSourcesHash,
  debianComponent,
  fetchWithProgress,
  hashOf,
  isCompleteOutput,
  NEVER_INSTALLED,
  openDebianArchive,
  packageVersion,
  pickKernelPackage,
  publishStagedOutput,
  sha256,
} from '../linux-image/image-build.ts';
import { assembleUnikernelInitramfs, PRE_INIT_PATH } from './assemble-unikernel-initramfs.ts';
import { bundleNodeEntry } from './node-entry-bundle.ts';
import { loadUnikernelRecipe, type UnikernelRecipe } from '../recipe/unikernel-recipe.ts';

const PRE_INIT_SOURCE = fileURLToPath(new URL('./pre-init/boardfleet-init.c', import.meta.url));
/** What a Node application needs besides the runtime: the C and C++ libraries it links against. */
const NODE_LIBRARY_PACKAGES = ['libc6', 'libstdc++6', 'libgcc-s1'];
const VM_ARCHITECTURE: Record<VmBoard['architecture'], VmArchitecture> = { amd64: 'x86_64', arm64: 'arm64' };
const NODE_ARCHITECTURE: Record<VmBoard['architecture'], 'x64' | 'arm64'> = { amd64: 'x64', arm64: 'arm64' };

export interface UnikernelBuildInput {
  recipeFile: string;
  /** A VM board: vm-x86_64 or vm-arm64. */
  board: string;
  cacheDir: string;
  /** Seconds since 1970 for every timestamp; default SOURCE_DATE_EPOCH, else the Debian Release date. */
  sourceDateEpoch?: number;
  /** Where finished steps are kept; default `<cacheDir>/image-steps`. */
  stepsDir?: string;
}

export interface UnikernelBuildResult {
  files: BuiltFile[];
  /** Hash of every input: recipe and its sources, board, kernel, Node, builder code, epoch. */
  inputsHash: string;
  /** The deployable tar: launch.json, kernel, initramfs.img, firecracker.json. */
  bundle: string;
  sbom: string;
  launchSpec: LaunchSpec;
  sizes: { kernel: number; initramfs: number; initramfsUncompressed: number; bundle: number };
  reusedSteps: string[];
}

/**
 * Builds a unikernel-style image: Debian's small VM kernel, and an initramfs holding only the
 * pre-init, the modules the VM needs and the application (a static C program, or Node with one
 * bundled file), which the pre-init execs as PID 1. The result is one tar with a launch spec for
 * qemu and one for Firecracker. Steps are cached by the hash of their inputs; the same inputs
 * give the same bytes.
 */
export async function buildUnikernel(
  input: UnikernelBuildInput,
  reporter: BuildReporter,
): Promise<UnikernelBuildResult> {
  const { signal } = reporter;
  const recipe = loadUnikernelRecipe(input.recipeFile);
  const board = getVmBoard(input.board);
  const architecture = VM_ARCHITECTURE[board.architecture];
  const stepsDir = input.stepsDir ?? join(input.cacheDir, 'image-steps');
  const reused: string[] = [];
  // Missing tools are said before anything is downloaded.
  const compiler = new CrossCompiler(undefined, board.architecture);
  await compiler.require();
  await new ImageTools().require('zstd');
  await mkdir(stepsDir, { recursive: true });
  const work = await mkdtemp(join(input.cacheDir, 'work-'));
  let staging: string | undefined;
  try {
    reporter.progress('reading the Debian archive index', 2);
    const { archive, epoch } = await openDebianArchive(
      { ...recipe.base, components: ['main'] },
      board.architecture,
      input,
      reporter,
    );

    const kernelPackage = pickKernelPackage(archive, board);
    const libraryPackages = recipe.app.node
      ? archive.resolve(NODE_LIBRARY_PACKAGES, { exclude: NEVER_INSTALLED })
      : [];
    const allPackages: ResolvedPackage[] = [kernelPackage, ...libraryPackages];
    reporter.log(`packages: ${allPackages.map((pkg) => `${pkg.name}=${pkg.version}`).join(' ')}`);
    reporter.progress('fetching packages', 5);
    await fetchWithProgress(archive, allPackages, reporter, 5, 35);

    reporter.progress('compiling the pre-init and the application', 38);
    const sourceRoot = dirname(recipe.file);
    const preInit = await buildStaticProgram({
      name: 'boardfleet-init',
      sources: [PRE_INIT_SOURCE],
      flags: ['-Os', '-Wall', '-Wextra', '-Werror'],
      sourceRoot: dirname(PRE_INIT_SOURCE),
      compiler,
      cacheDir: input.cacheDir,
    });
    const application = await buildApplication(recipe, board, {
      work,
      cacheDir: input.cacheDir,
      compiler,
      sourceRoot,
      signal,
    });
    reporter.log(`application: ${application.describe}`);

    const kernelDir = (await archive.unpack(kernelPackage, { signal })).root;
    const kernel = kernelVersionOf(kernelDir);
    const modulesRoot = join(kernelDir, kernel.modulesDir);
    const closure = moduleClosure(modulesRoot, [...board.kernel.modules, ...recipe.kernel.modules]);
    reporter.log(`modules: ${closure.files.length} files; built in: ${closure.builtin.join(', ') || '-'}`);

    const inputsHash = hashOf({
      builder: builderSourcesHash(),
      epoch,
      board,
      recipe: recipeFingerprint(recipe),
      kernel: kernelPackage.sha256,
      libraries: libraryPackages.map((pkg) => pkg.sha256),
      preInit: await sha256File(preInit),
      application: application.fingerprint,
    });
    reporter.log(`inputs ${inputsHash.slice(0, 16)}`);

    const cmdline = [
      `console=${board.console.device}`,
      // A crashed application ends the VM at once (with -no-reboot) instead of a hung panic screen.
      'panic=-1',
      `rdinit=${PRE_INIT_PATH}`,
      'quiet',
      ...recipe.kernel.cmdline,
    ].join(' ');

    const outputDir = join(stepsDir, `unikernel-${inputsHash}`);
    const baseName = `${recipe.name}-${recipe.version}-${board.id}`;
    const bundleFile = join(outputDir, `${baseName}.unikernel.tar`);
    const sbomFile = join(outputDir, `${baseName}.spdx.json`);
    const specFile = join(outputDir, BUNDLE_FILES.launchSpec);
    if (isCompleteOutput(outputDir)) {
      reused.push('initramfs', 'bundle', 'sbom');
    } else {
      staging = `${outputDir}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
      await mkdir(staging, { recursive: true });
      reporter.progress('assembling the initramfs', 60);
      const tree = join(work, 'initramfs');
      await assembleUnikernelInitramfs({
        dir: tree,
        board,
        recipe,
        preInit,
        modulesRoot,
        moduleFiles: closure.files,
        application,
        packageTrees: await Promise.all(
          libraryPackages.map(async (pkg) => ({
            name: pkg.name,
            root: (await archive.unpack(pkg, { signal })).root,
          })),
        ),
      });
      const cpio = join(work, 'initramfs.cpio');
      await writeCpioNewc(tree, cpio, {
        epoch,
        compression: 'none',
        // The kernel opens /dev/console for PID 1's output before anything could mount devtmpfs.
        charDevices: [{ path: 'dev/console', major: 5, minor: 1 }],
      });
      reporter.progress('compressing the initramfs', 80);
      const initramfs = join(staging, BUNDLE_FILES.initramfs);
      // zstd: the kernel unpacks it at every boot, and zstd unpacks several times faster than gzip.
      await compressImage(cpio, initramfs, { format: 'zstd' });
      const kernelFile = join(kernelDir, kernel.kernel);
      const sizes = { kernel: (await stat(kernelFile)).size, initramfs: (await stat(initramfs)).size };
      const spec = launchSpecSchema.parse({
        schemaVersion: 1,
        name: recipe.name,
        version: recipe.version,
        architecture,
        cmdline,
        memoryMiB: recipe.memoryMiB,
        cpus: recipe.cpus,
        network: recipe.network,
        ports: recipe.ports,
        ...(recipe.readiness ? { readiness: recipe.readiness } : {}),
        stop: recipe.stop === 'signal' ? 'ctrl-alt-del' : 'kill',
        sizes,
      } satisfies LaunchSpec);
      await writeFile(specFile.replace(outputDir, staging), `${JSON.stringify(spec, null, 2)}\n`);
      await writeFile(
        join(staging, BUNDLE_FILES.firecracker),
        `${JSON.stringify(firecrackerConfig(spec), null, 2)}\n`,
      );
      await writeFile(join(staging, 'uncompressed-initramfs-size'), String((await stat(cpio)).size));

      reporter.progress('writing the bundle', 90);
      await writeFlatTar(
        join(staging, `${baseName}.unikernel.tar`),
        [
          { name: BUNDLE_FILES.launchSpec, path: join(staging, BUNDLE_FILES.launchSpec) },
          { name: BUNDLE_FILES.kernel, path: kernelFile },
          { name: BUNDLE_FILES.initramfs, path: initramfs },
          { name: BUNDLE_FILES.firecracker, path: join(staging, BUNDLE_FILES.firecracker) },
        ],
        epoch,
      );

      reporter.progress('writing the SBOM', 95);
      const components: SbomComponent[] = [
        ...allPackages.map((pkg) => debianComponent(pkg, archive.mirror, board.architecture)),
        ...application.sbom,
      ];
      const document = spdxDocument({
        imageName: recipe.name,
        imageVersion: recipe.version,
        board: board.id,
        buildId: inputsHash,
        epochSeconds: epoch,
        toolVersion: packageVersion(),
        components,
      });
      await writeFile(join(staging, `${baseName}.spdx.json`), `${JSON.stringify(document, null, 2)}\n`);
      await publishStagedOutput(staging, outputDir);
    }
    const launchSpec = launchSpecSchema.parse(JSON.parse(readFileSync(specFile, 'utf8')));
    const bundleSize = (await stat(bundleFile)).size;
    const initramfsUncompressed = Number(
      readFileSync(join(outputDir, 'uncompressed-initramfs-size'), 'utf8'),
    );
    reporter.log(
      `kernel ${launchSpec.sizes.kernel} bytes, initramfs ${launchSpec.sizes.initramfs} bytes ` +
        `(${initramfsUncompressed} unpacked), bundle ${bundleSize} bytes, sha256 ${(await sha256File(bundleFile)).slice(0, 16)}`,
    );
    if (reused.length > 0) reporter.log(`reused cached steps: ${reused.join(', ')}`);
    reporter.progress('done', 98);
    // The VM board and every host board that can run it: a release targets the hosts' agents.
    const boards = [board.id, ...board.hostBoards];
    const artifactName = `${recipe.name}-${board.id}`;
    return {
      files: [
        {
          role: 'unikernel',
          path: bundleFile,
          name: artifactName,
          version: recipe.version,
          kind: 'unikernel',
          boards,
        },
        {
          role: 'sbom',
          path: sbomFile,
          name: `${artifactName}-sbom`,
          version: recipe.version,
          kind: 'sbom',
          boards,
        },
      ],
      inputsHash,
      bundle: bundleFile,
      sbom: sbomFile,
      launchSpec,
      sizes: {
        kernel: launchSpec.sizes.kernel,
        initramfs: launchSpec.sizes.initramfs,
        initramfsUncompressed,
        bundle: bundleSize,
      },
      reusedSteps: reused,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
    if (staging) await rm(staging, { recursive: true, force: true });
  }
}

/** The application as the initramfs gets it: a static program, or Node plus one bundled module. */
export type UnikernelApplication =
  | { kind: 'c'; program: string; describe: string; fingerprint: string; sbom: SbomComponent[] }
  | {
      kind: 'node';
      node: NodeRuntime;
      module: string;
      describe: string;
      fingerprint: string;
      sbom: SbomComponent[];
    };

async function buildApplication(
  recipe: UnikernelRecipe,
  board: VmBoard,
  options: {
    work: string;
    cacheDir: string;
    compiler: CrossCompiler;
    sourceRoot: string;
    signal: AbortSignal;
  },
): Promise<UnikernelApplication> {
  if (recipe.app.c) {
    const program = await buildStaticProgram({
      name: recipe.name,
      sources: recipe.app.c.sources,
      flags: recipe.app.c.cflags,
      sourceRoot: options.sourceRoot,
      compiler: options.compiler,
      cacheDir: options.cacheDir,
    });
    const sha256 = await sha256File(program);
    return {
      kind: 'c',
      program,
      describe: `static C program ${recipe.name}, ${(await stat(program)).size} bytes`,
      fingerprint: sha256,
      sbom: [
        {
          name: recipe.name,
          version: recipe.version,
          purl: `pkg:generic/${recipe.name}@${recipe.version}`,
          downloadLocation: 'NOASSERTION',
          sha256,
          supplier: 'NOASSERTION',
        },
      ],
    };
  }
  const nodeApp = recipe.app.node!;
  const node = await fetchNodeRuntime({
    architecture: NODE_ARCHITECTURE[board.architecture],
    versionRange: nodeApp.version,
    cacheDir: options.cacheDir,
    signal: options.signal,
  });

  const outFile = join(options.work, `${recipe.name}.mjs`);
  const bundle = nodeApp.boardfleetAgent
    ? await bundleAgent({ outFile, cacheDir: join(options.cacheDir, 'agent-bundle') })
    : await bundleNodeEntry({ entry: nodeApp.entry!, outFile });
  const bundleName = nodeApp.boardfleetAgent ? 'boardfleet-agent' : recipe.name;
  const bundleVersion = nodeApp.boardfleetAgent ? packageVersion() : recipe.version;
  return {
    kind: 'node',
    node,
    module: bundle.file,
    describe: `Node ${node.version} with ${bundleName} (${bundle.size} bytes)`,
    fingerprint: hashOf({ node: node.sha256, bundle: bundle.sha256 }),
    sbom: [
      nodeRuntimeComponent(node),
      ...bundleComponents({
        name: bundleName,
        version: bundleVersion,
        sha256: bundle.sha256,
        supplier: nodeApp.boardfleetAgent ? 'Organization: Boardfleet' : 'NOASSERTION',
        packages: bundle.packages,
      }),
    ],
  };
}

/**
 * Firecracker's configuration file (`firecracker --config-file firecracker.json`), next to the
 * kernel and initramfs of the bundle. Firecracker's devices are virtio-mmio, announced on the
 * command line it builds; its network needs a tap device named by the host.
 */
export function firecrackerConfig(spec: LaunchSpec): Record<string, unknown> {
  return {
    'boot-source': {
      kernel_image_path: BUNDLE_FILES.kernel,
      initrd_path: BUNDLE_FILES.initramfs,
      boot_args: `${spec.cmdline} reboot=k pci=off`,
    },
    'machine-config': { vcpu_count: spec.cpus, mem_size_mib: spec.memoryMiB },
    drives: [],
    'network-interfaces': spec.network.mode === 'none' ? [] : [{ iface_id: 'eth0', host_dev_name: 'tap0' }],
  };
}

/** The recipe's content and its sources' bytes, without this checkout's paths. */
function recipeFingerprint(recipe: UnikernelRecipe): string {
  const { file, ...content } = recipe;
  const relativeTo = (path: string) => relative(dirname(file), path);
  const { c, node } = content.app;
  const sources = [...(c?.sources ?? []), ...(node?.entry ? [node.entry] : [])].map((source) => ({
    path: relativeTo(source),
    sha256: sha256(readFileSync(source)),
  }));
  return hashOf({
    content: {
      ...content,
      app: {
        ...content.app,
        c: c ? { ...c, sources: c.sources.map(relativeTo) } : null,
        node: node ? { ...node, entry: node.entry ? relativeTo(node.entry) : null } : null,
      },
    },
    sources,
  });
}

/** A plain ustar archive of files in the given order, owned by 0:0, every mtime the epoch. */
async function writeFlatTar(
  out: string,
  entries: Array<{ name: string; path: string }>,
  epoch: number,
): Promise<void> {
  const handle = await open(out, 'w');
  try {
    for (const entry of entries) {
      const size = (await stat(entry.path)).size;
      await handle.write(tarHeader({ name: entry.name, type: 'file', size, mtime: epoch }));
      for await (const chunk of createReadStream(entry.path, { highWaterMark: 1 << 20 })) {
        await handle.write(chunk as Buffer);
      }
      const pad = (512 - (size % 512)) % 512;
      if (pad > 0) await handle.write(Buffer.alloc(pad));
    }
    // Two zero blocks end a tar archive.
    await handle.write(Buffer.alloc(1024));
    await handle.sync();
  } finally {
    await handle.close();
  }
}
