/*
 * The RP2040 registers this firmware touches, with the addresses, offsets and fields the RP2040
 * datasheet gives in each peripheral's "List of Registers". Only what we use is named here.
 */
#ifndef BOARDFLEET_RP2040_REGISTERS_H
#define BOARDFLEET_RP2040_REGISTERS_H

#include <stdint.h>

#define REG32(address) (*(volatile uint32_t *)(address))

/* Every APB/AHB peripheral register has aliases that XOR, set or clear the bits written to them
 * (datasheet "Atomic Register Access"), so a field changes without a read-modify-write. */
#define REG_ALIAS_SET 0x2000u
#define REG_ALIAS_CLR 0x3000u
#define REG_SET(address, bits) (REG32((address) + REG_ALIAS_SET) = (bits))
#define REG_CLR(address, bits) (REG32((address) + REG_ALIAS_CLR) = (bits))

/* Memory map. */
#define FLASH_XIP_BASE 0x10000000u
#define SRAM_END 0x20042000u /* end of SRAM5 (scratch Y) */

/* Cortex-M0+ system control: where the vector table is, and which interrupts are enabled. */
#define PPB_VTOR 0xE000ED08u
#define NVIC_ISER 0xE000E100u
#define IRQ_TIMER_0 0u
#define IRQ_USBCTRL 5u
#define IRQ_UART0 20u

/* XIP_SSI: the QSPI controller the flash is read through. */
#define SSI_BASE 0x18000000u
#define SSI_CTRLR0 (SSI_BASE + 0x00u)
#define SSI_CTRLR1 (SSI_BASE + 0x04u)
#define SSI_SSIENR (SSI_BASE + 0x08u)
#define SSI_SER (SSI_BASE + 0x10u)
#define SSI_BAUDR (SSI_BASE + 0x14u)
#define SSI_SR (SSI_BASE + 0x28u)
#define SSI_DR0 (SSI_BASE + 0x60u)
#define SSI_SPI_CTRLR0 (SSI_BASE + 0xF4u)
#define SSI_CTRLR0_SPI_FRF_QUAD (2u << 21)
#define SSI_CTRLR0_DFS_32_LSB 16
#define SSI_CTRLR0_TMOD_TX_AND_RX (0u << 8)
#define SSI_CTRLR0_TMOD_EEPROM_READ (3u << 8)
#define SSI_SR_BUSY (1u << 0)
#define SSI_SR_TFE (1u << 2)
#define SSI_SPI_CTRLR0_XIP_CMD_LSB 24
#define SSI_SPI_CTRLR0_WAIT_CYCLES_LSB 11
#define SSI_SPI_CTRLR0_INST_L_NONE (0u << 8)
#define SSI_SPI_CTRLR0_INST_L_8 (2u << 8)
#define SSI_SPI_CTRLR0_ADDR_L_LSB 2 /* in units of 4 bits */
#define SSI_SPI_CTRLR0_TRANS_1C2A 1u /* command in standard SPI, address in the frame format */
#define SSI_SPI_CTRLR0_TRANS_2C2A 2u /* command and address in the frame format */

/* RESETS: peripherals start held in reset. */
#define RESETS_BASE 0x4000C000u
#define RESETS_RESET (RESETS_BASE + 0x0u)
#define RESETS_RESET_DONE (RESETS_BASE + 0x8u)
#define RESET_ADC (1u << 0)
#define RESET_IO_BANK0 (1u << 5)
#define RESET_PADS_BANK0 (1u << 8)
#define RESET_PLL_SYS (1u << 12)
#define RESET_PWM (1u << 14)
#define RESET_TIMER (1u << 21)
#define RESET_UART0 (1u << 22)

/* CLOCKS: each clock has CTRL, DIV and SELECTED (one-hot of its glitchless source). */
#define CLOCKS_BASE 0x40008000u
#define CLK_REF_CTRL (CLOCKS_BASE + 0x30u)
#define CLK_REF_SELECTED (CLOCKS_BASE + 0x38u)
#define CLK_SYS_CTRL (CLOCKS_BASE + 0x3Cu)
#define CLK_SYS_SELECTED (CLOCKS_BASE + 0x44u)
#define CLK_PERI_CTRL (CLOCKS_BASE + 0x48u)
#define CLK_ADC_CTRL (CLOCKS_BASE + 0x60u)
#define CLK_ADC_DIV (CLOCKS_BASE + 0x64u)
#define CLK_REF_CTRL_SRC_XOSC 2u
#define CLK_SYS_CTRL_SRC_AUX 1u
#define CLK_SYS_CTRL_AUXSRC_PLL_SYS (0u << 5)
#define CLK_PERI_CTRL_ENABLE (1u << 11)
#define CLK_PERI_CTRL_AUXSRC_CLK_SYS (0u << 5)
#define CLK_ADC_CTRL_ENABLE (1u << 11)
#define CLK_ADC_CTRL_AUXSRC_PLL_SYS (1u << 5)
#define CLK_ADC_DIV_INT_LSB 8

/* XOSC: the crystal oscillator. */
#define XOSC_BASE 0x40024000u
#define XOSC_CTRL (XOSC_BASE + 0x00u)
#define XOSC_STATUS (XOSC_BASE + 0x04u)
#define XOSC_STARTUP (XOSC_BASE + 0x0Cu)
#define XOSC_CTRL_FREQ_RANGE_1_15MHZ 0xAA0u
#define XOSC_CTRL_ENABLE (0xFABu << 12)
#define XOSC_STATUS_STABLE (1u << 31)

/* PLL_SYS (and PLL_USB, the same layout): f_out = f_ref / REFDIV * FBDIV / (POSTDIV1 * POSTDIV2),
 * the VCO within 750-1600 MHz. The registers are offsets from a PLL's base. */
#define PLL_SYS_BASE 0x40028000u
#define PLL_CS 0x0u
#define PLL_PWR 0x4u
#define PLL_FBDIV_INT 0x8u
#define PLL_PRIM 0xCu
#define PLL_CS_LOCK (1u << 31)
#define PLL_PWR_PD (1u << 0)
#define PLL_PWR_POSTDIVPD (1u << 3)
#define PLL_PWR_VCOPD (1u << 5)
#define PLL_PRIM_POSTDIV1_LSB 16
#define PLL_PRIM_POSTDIV2_LSB 12

/* WATCHDOG's tick generator times the TIMER: one tick a microsecond. */
#define WATCHDOG_BASE 0x40058000u
#define WATCHDOG_TICK (WATCHDOG_BASE + 0x2Cu)
#define WATCHDOG_TICK_ENABLE (1u << 9)

/* TIMER: a 64-bit microsecond count. */
#define TIMER_BASE 0x40054000u
#define TIMER_TIMERAWH (TIMER_BASE + 0x24u)
#define TIMER_TIMERAWL (TIMER_BASE + 0x28u)
#define TIMER_ALARM0 (TIMER_BASE + 0x10u) /* writing arms it; it fires when TIMERAWL equals it */
#define TIMER_INTR (TIMER_BASE + 0x34u)
#define TIMER_INTE (TIMER_BASE + 0x38u)
#define TIMER_ALARM_0 (1u << 0)

/* IO_BANK0: GPIOn_CTRL chooses the pin's function. */
#define IO_BANK0_BASE 0x40014000u
#define IO_BANK0_GPIO_CTRL(pin) (IO_BANK0_BASE + 8u * (pin) + 4u)
#define GPIO_FUNC_UART 2u
#define GPIO_FUNC_PWM 4u
#define GPIO_FUNC_SIO 5u

/* PADS_BANK0: each pin's input buffer, pulls and drive. */
#define PADS_BANK0_BASE 0x4001C000u
#define PADS_BANK0_GPIO(pin) (PADS_BANK0_BASE + 4u * (pin) + 4u)
#define PADS_SCHMITT (1u << 1)
#define PADS_PULL_DOWN (1u << 2)
#define PADS_PULL_UP (1u << 3)
#define PADS_DRIVE_4MA (1u << 4)
#define PADS_INPUT_ENABLE (1u << 6)

/* SIO: single-cycle GPIO input, output and output enable. */
#define SIO_BASE 0xD0000000u
#define SIO_GPIO_IN (SIO_BASE + 0x04u)
#define SIO_GPIO_OUT_SET (SIO_BASE + 0x14u)
#define SIO_GPIO_OUT_CLR (SIO_BASE + 0x18u)
#define SIO_GPIO_OUT_XOR (SIO_BASE + 0x1Cu)
#define SIO_GPIO_OE_SET (SIO_BASE + 0x24u)
#define SIO_GPIO_OE_CLR (SIO_BASE + 0x28u)

/* ADC: one conversion at a time of the input AINSEL selects. */
#define ADC_BASE 0x4004C000u
#define ADC_CS (ADC_BASE + 0x00u)
#define ADC_RESULT (ADC_BASE + 0x04u)
#define ADC_CS_EN (1u << 0)
#define ADC_CS_START_ONCE (1u << 2)
#define ADC_CS_READY (1u << 8)
#define ADC_CS_AINSEL_LSB 12

/* PWM: eight slices, each a counter wrapping at TOP with two compare outputs, A and B. GPn is
 * slice (n / 2) % 8, output A for even n and B for odd n. */
#define PWM_BASE 0x40050000u
#define PWM_CSR(slice) (PWM_BASE + 0x14u * (slice) + 0x00u)
#define PWM_DIV(slice) (PWM_BASE + 0x14u * (slice) + 0x04u)
#define PWM_CC(slice) (PWM_BASE + 0x14u * (slice) + 0x0Cu)
#define PWM_TOP(slice) (PWM_BASE + 0x14u * (slice) + 0x10u)
#define PWM_CSR_EN (1u << 0)
#define PWM_DIV_INT_LSB 4
#define PWM_CC_B_LSB 16

/* UART0: an ARM PL011. */
#define UART0_BASE 0x40034000u
#define UART_DR (UART0_BASE + 0x00u)
#define UART_FR (UART0_BASE + 0x18u)
#define UART_IBRD (UART0_BASE + 0x24u)
#define UART_FBRD (UART0_BASE + 0x28u)
#define UART_LCR_H (UART0_BASE + 0x2Cu)
#define UART_CR (UART0_BASE + 0x30u)
#define UART_IMSC (UART0_BASE + 0x38u)
#define UART_FR_RXFE (1u << 4)
#define UART_FR_TXFF (1u << 5)
#define UART_LCR_H_FEN (1u << 4)
#define UART_LCR_H_WLEN_8 (3u << 5)
#define UART_CR_UARTEN (1u << 0)
#define UART_CR_TXE (1u << 8)
#define UART_CR_RXE (1u << 9)
#define UART_IMSC_RXIM (1u << 4) /* the RX FIFO reached its trigger level */
#define UART_IMSC_RTIM (1u << 6) /* bytes wait in the RX FIFO and the line has gone quiet */

#endif
