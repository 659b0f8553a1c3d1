/*
 * Stage-2 boot for the Pico's Winbond W25Q flash. The boot ROM copies the first 256 bytes of
 * flash to the top of SRAM (0x20041F00) and runs them if their CRC32 matches (the builder
 * appends it); this code must fit in the 252 bytes before it. It makes sure the flash's Quad
 * Enable bit is set, switches the QSPI controller to quad I/O fast reads (EBh) in continuous
 * read mode, so later reads send no command byte, then starts the firmware whose vector table
 * follows it in flash.
 */
#include <stdint.h>

#include "rp2040-registers.h"

#define FLASH_WRITE_ENABLE 0x06u
#define FLASH_READ_STATUS_1 0x05u
#define FLASH_READ_STATUS_2 0x35u
#define FLASH_WRITE_STATUS 0x01u /* followed by status register 1, then 2 */
#define FLASH_QUAD_IO_READ 0xEBu
#define FLASH_STATUS_1_BUSY 0x01u
#define FLASH_STATUS_2_QUAD_ENABLE 0x02u
/* Mode bits sent after the address: 0b10xx_xxxx keeps the flash in continuous read mode. */
#define FLASH_CONTINUOUS_READ 0xA0u
/* The W25Q's quad I/O fast read needs 4 dummy clocks after the address and mode bits. */
#define FLASH_QUAD_READ_DUMMY_CLOCKS 4u

/* The SSI clock is clk_sys divided by this: the boot ROM leaves clk_sys on the ring oscillator
 * (about 6 MHz), and the firmware raises clk_sys to 125 MHz, where 4 gives 31 MHz. */
#define SSI_CLOCK_DIVIDER 4u

/* The SSI's registers as offsets from one base held in a register: with each address a constant
 * of its own, the code does not fit in 252 bytes. The empty asm hides the base's value from the
 * compiler, which would otherwise fold it back into one constant per register. */
static volatile uint32_t *ssi_base(void) {
    volatile uint32_t *base;
    __asm__("" : "=r"(base) : "0"(SSI_BASE));
    return base;
}
#define SSI(ssi, address) ((ssi)[((address) - SSI_BASE) / 4u])

static void ssi_wait_idle(volatile uint32_t *ssi) {
    while ((SSI(ssi, SSI_SR) & (SSI_SR_TFE | SSI_SR_BUSY)) != SSI_SR_TFE) {
    }
}

/* Sends `length` bytes of `bytes` (most significant first) as one standard-SPI command while
 * chip select stays low, and returns the last byte received. */
static uint32_t flash_command(volatile uint32_t *ssi, uint32_t bytes, uint32_t length) {
    for (uint32_t i = length; i-- > 0;) SSI(ssi, SSI_DR0) = (bytes >> (8u * i)) & 0xFFu;
    ssi_wait_idle(ssi);
    uint32_t last = 0;
    for (uint32_t i = 0; i < length; i++) last = SSI(ssi, SSI_DR0);
    return last;
}

void boot2_main(void) __attribute__((noreturn, used));

/* Whoever starts this page may leave the stack at the end of SRAM, inside the page (rp2040js,
 * playing the boot ROM, does): a call or two deep, our pushes would overwrite our own code. So
 * the stack moves below the page first; nothing returns to the caller. */
__attribute__((section(".boot2.entry"), naked, noreturn, used)) void boot2_entry(void) {
    __asm__ volatile("ldr r0, =__boot2_start\n\tmov sp, r0\n\tb boot2_main\n\t.ltorg");
}

void boot2_main(void) {
    volatile uint32_t *const ssi = ssi_base();
    SSI(ssi, SSI_SSIENR) = 0;
    SSI(ssi, SSI_BAUDR) = SSI_CLOCK_DIVIDER;
    SSI(ssi, SSI_SER) = 1;
    SSI(ssi, SSI_CTRLR0) = (7u << SSI_CTRLR0_DFS_32_LSB) | SSI_CTRLR0_TMOD_TX_AND_RX;
    SSI(ssi, SSI_SSIENR) = 1;

    /* Quad Enable is non-volatile: set it once, then wait for the write to finish. */
    if (!(flash_command(ssi, FLASH_READ_STATUS_2 << 8, 2) & FLASH_STATUS_2_QUAD_ENABLE)) {
        flash_command(ssi, FLASH_WRITE_ENABLE, 1);
        flash_command(ssi, (FLASH_WRITE_STATUS << 16) | FLASH_STATUS_2_QUAD_ENABLE, 3);
        while (flash_command(ssi, FLASH_READ_STATUS_1 << 8, 2) & FLASH_STATUS_1_BUSY) {
        }
    }

    /* One read with the EBh command byte puts the flash in continuous read mode... */
    SSI(ssi, SSI_SSIENR) = 0;
    SSI(ssi, SSI_CTRLR0) =
        SSI_CTRLR0_SPI_FRF_QUAD | (31u << SSI_CTRLR0_DFS_32_LSB) | SSI_CTRLR0_TMOD_EEPROM_READ;
    SSI(ssi, SSI_CTRLR1) = 0;
    SSI(ssi, SSI_SPI_CTRLR0) = (8u << SSI_SPI_CTRLR0_ADDR_L_LSB) |
                            (FLASH_QUAD_READ_DUMMY_CLOCKS << SSI_SPI_CTRLR0_WAIT_CYCLES_LSB) |
                            SSI_SPI_CTRLR0_INST_L_8 | SSI_SPI_CTRLR0_TRANS_1C2A;
    SSI(ssi, SSI_SSIENR) = 1;
    SSI(ssi, SSI_DR0) = FLASH_QUAD_IO_READ;
    SSI(ssi, SSI_DR0) = FLASH_CONTINUOUS_READ; /* address 0, then the mode bits */
    ssi_wait_idle(ssi);

    /* ...after which every XIP read sends only the address and the mode bits, in quad. */
    SSI(ssi, SSI_SSIENR) = 0;
    SSI(ssi, SSI_SPI_CTRLR0) = (FLASH_CONTINUOUS_READ << SSI_SPI_CTRLR0_XIP_CMD_LSB) |
                            (8u << SSI_SPI_CTRLR0_ADDR_L_LSB) |
                            (FLASH_QUAD_READ_DUMMY_CLOCKS << SSI_SPI_CTRLR0_WAIT_CYCLES_LSB) |
                            SSI_SPI_CTRLR0_INST_L_NONE | SSI_SPI_CTRLR0_TRANS_2C2A;
    SSI(ssi, SSI_SSIENR) = 1;

    /* Start the firmware as the core would after reset: its vector table follows this page. */
    const uint32_t vectors = FLASH_XIP_BASE + 0x100u;
    REG32(PPB_VTOR) = vectors;
    __asm__ volatile("msr msp, %0\n\tbx %1" : : "r"(REG32(vectors)), "r"(REG32(vectors + 4u)));
    __builtin_unreachable();
}
