import { CrossToolchain } from './cross-toolchain.ts';

export type { ToolRun } from './cross-toolchain.ts';

/** Each AVR tool and the Debian package that provides it, for an error a person can act on. */
const TOOL_PACKAGES = {
  'avr-gcc': 'gcc-avr',
  'avr-g++': 'gcc-avr',
  'avr-gcc-ar': 'gcc-avr',
  'avr-objcopy': 'binutils-avr',
  'avr-size': 'binutils-avr',
} as const;

export type AvrTool = keyof typeof TOOL_PACKAGES;

/** The avr-gcc toolchain with avr-libc. */
export class AvrToolchain extends CrossToolchain<AvrTool> {
  constructor(searchPath?: string) {
    super(
      {
        label: 'AVR',
        toolPackages: TOOL_PACKAGES,
        library: { proof: '/usr/lib/avr/include/avr/io.h', package: 'avr-libc', name: 'avr-libc headers' },
      },
      searchPath,
    );
  }
}
