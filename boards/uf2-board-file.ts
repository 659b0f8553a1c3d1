import { z } from 'zod';

const usbId = z.number().int().min(0).max(0xffff);
const u32 = z.number().int().min(0).max(0xffffffff);

/**
 * A microcontroller flashed by copying a UF2 file onto the USB drive its boot ROM shows (the
 * Raspberry Pi Pico). Kept apart from `mcu`, whose fields are the AVR toolchain's and bootloaders'.
 */
export const uf2BoardFileSchema = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes'),
    name: z.string().min(1),
    family: z.literal('uf2'),
    mcu: z.enum(['rp2040']),
    /** The system clock the firmware runs at, and the crystal it is derived from. */
    clockHz: z.number().int().positive(),
    crystalHz: z.number().int().positive(),
    flash: z.strictObject({
      /** Where the flash appears in the address space (execute in place); UF2 blocks address it. */
      address: u32,
      size: z.number().int().positive(),
      /** The unit the boot ROM programs, and one UF2 block's payload. */
      pageSize: z.number().int().positive(),
      /** The unit the flash erases. */
      sectorSize: z.number().int().positive(),
      /** The stage-2 boot at the start of flash, its CRC32 in its last 4 bytes. */
      boot2Size: z.number().int().positive(),
    }),
    ramSize: z.number().int().positive(),
    uf2: z.strictObject({
      /** The family id the boot ROM accepts in a block (UF2 flag 0x2000). */
      familyId: u32,
      /** How the boot ROM's drive is found: its volume label, and the info file with its Board-ID. */
      volumeLabel: z.string().regex(/^[A-Z0-9 _-]{1,11}$/, 'a FAT volume label (up to 11 capitals)'),
      infoFile: z.string().regex(/^[A-Z0-9_]{1,8}\.[A-Z0-9]{1,3}$/, 'an 8.3 file name'),
      boardId: z.string().min(1),
    }),
    /** The UART our firmware speaks Firmata on, and its pins (GPIO numbers). */
    serial: z.strictObject({
      uart: z.number().int().min(0).max(1),
      txPin: z.number().int().nonnegative(),
      rxPin: z.number().int().nonnegative(),
      baudRate: z.number().int().positive(),
    }),
    usb: z.array(
      z.strictObject({
        vendorId: usbId,
        productId: usbId,
        /** `bootloader-drive`: the boot ROM's mass-storage drive; `firmware-serial`: a running firmware's CDC port. */
        role: z.enum(['bootloader-drive', 'firmware-serial']),
        description: z.string().min(1),
      }),
    ),
    ledPin: z.number().int().nonnegative(),
  })
  .superRefine((board, context) => {
    const problem = (path: PropertyKey[], message: string) =>
      context.addIssue({ code: 'custom', path, message });
    const { flash } = board;
    if (flash.address % flash.sectorSize !== 0) {
      problem(['flash', 'address'], 'must be a multiple of flash.sectorSize');
    }
    if (flash.sectorSize % flash.pageSize !== 0) {
      problem(['flash', 'sectorSize'], 'must be a whole number of pages');
    }
    if (flash.size % flash.sectorSize !== 0) problem(['flash', 'size'], 'must be a whole number of sectors');
    if (flash.address + flash.size > 0x1_0000_0000) {
      problem(['flash', 'size'], 'the flash must end inside the 32-bit address space');
    }
    if (flash.boot2Size !== flash.pageSize) {
      problem(['flash', 'boot2Size'], 'the boot ROM reads the stage-2 boot as one page');
    }
    if (!board.usb.some((device) => device.role === 'bootloader-drive')) {
      problem(['usb'], "must list the boot ROM's drive (role: bootloader-drive): flashing looks for it");
    }
    if (board.serial.txPin === board.serial.rxPin) problem(['serial', 'rxPin'], 'must differ from txPin');
  });
