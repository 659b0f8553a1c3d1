/* UART0, an ARM PL011, with both 32-byte FIFOs on. Its interrupt moves received bytes into a ring
 * buffer, so the main loop can sleep between them. The GPIO bank must be out of reset (main does it).
 * Firmata's bytes also go through the USB serial port: read from either, written to both. */
#include "uart.h"

#include "clock.h"
#include "resets.h"
#include "rp2040-registers.h"
#include "usb-cdc.h"

/* A power of two; one slot stays empty to tell full from empty. When full, new bytes are dropped. */
#define RX_BUFFER_SIZE 128u
static volatile uint8_t rx_buffer[RX_BUFFER_SIZE];
static volatile uint8_t rx_head;
static volatile uint8_t rx_tail;

void uart_init(uint32_t baud) {
    resets_release(RESET_UART0);

    /* The PL011 divides clk_peri by 16 * (IBRD + FBRD / 64); rounded to the nearest 1/64. */
    const uint32_t eighths = 8u * CLOCK_PERI_HZ / baud;
    REG32(UART_IBRD) = eighths >> 7;
    REG32(UART_FBRD) = ((eighths & 0x7Fu) + 1u) / 2u;
    /* Writing LCR_H also latches the divisor just written. */
    REG32(UART_LCR_H) = UART_LCR_H_WLEN_8 | UART_LCR_H_FEN;
    REG32(UART_CR) = UART_CR_UARTEN | UART_CR_TXE | UART_CR_RXE;
    REG32(UART_IMSC) = UART_IMSC_RXIM | UART_IMSC_RTIM;
    REG32(NVIC_ISER) = 1u << IRQ_UART0;

    REG32(IO_BANK0_GPIO_CTRL(UART_TX_PIN)) = GPIO_FUNC_UART;
    REG32(IO_BANK0_GPIO_CTRL(UART_RX_PIN)) = GPIO_FUNC_UART;
}

void uart0_irq(void) {
    /* Emptying the RX FIFO is what clears both receive interrupts. */
    while (!(REG32(UART_FR) & UART_FR_RXFE)) {
        const uint8_t byte = (uint8_t)REG32(UART_DR);
        const uint8_t next = (uint8_t)((rx_head + 1u) & (RX_BUFFER_SIZE - 1u));
        if (next != rx_tail) {
            rx_buffer[rx_head] = byte;
            rx_head = next;
        }
    }
}

uint8_t uart_available(void) {
    return rx_head != rx_tail || usb_cdc_available();
}

int16_t uart_read(void) {
    if (rx_head == rx_tail) return usb_cdc_read();
    const uint8_t byte = rx_buffer[rx_tail];
    rx_tail = (uint8_t)((rx_tail + 1u) & (RX_BUFFER_SIZE - 1u));
    return byte;
}

/* usb_cdc_write drops the byte while no program has the USB port open. */
void uart_write(uint8_t byte) {
    while (REG32(UART_FR) & UART_FR_TXFF) {
    }
    REG32(UART_DR) = byte;
    usb_cdc_write(byte);
}
