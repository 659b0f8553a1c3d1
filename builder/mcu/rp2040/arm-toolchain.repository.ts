import { CrossToolchain } from '../cross-toolchain.ts';

/** Each ARM tool and the Debian package that provides it, for an error a person can act on. */
const TOOL_PACKAGES = {
  'arm-none-eabi-gcc': 'gcc-arm-none-eabi',
  // binutils-arm-none-eabi, which gcc-arm-none-eabi brings along.
  'arm-none-eabi-objcopy': 'gcc-arm-none-eabi',
  'arm-none-eabi-size': 'gcc-arm-none-eabi',
} as const;

export type ArmTool = keyof typeof TOOL_PACKAGES;

/** The C library the firmware links with (`--specs=nano.specs`): libnewlib-arm-none-eabi's. */
const NEWLIB_PROOF = '/usr/lib/arm-none-eabi/newlib/nano.specs';

/** The arm-none-eabi toolchain with newlib. */
export class ArmToolchain extends CrossToolchain<ArmTool> {
  /** `newlibProof` moves the C library's tell-tale file, which lets a test show it missing. */
  constructor(searchPath?: string, newlibProof = NEWLIB_PROOF) {
    super(
      {
        label: 'ARM',
        toolPackages: TOOL_PACKAGES,
        library: { proof: newlibProof, package: 'libnewlib-arm-none-eabi', name: `newlib (${newlibProof})` },
      },
      searchPath,
    );
  }
}
