/* The link to the Firmata host on the RP2040: UART0 on GP0 (TX) and GP1 (RX), 8N1, and the USB
 * serial port (usb-cdc.h) alongside it. The calls of the shared uart.h, and what the RP2040's
 * main loop and vector table need besides. */
#ifndef BOARDFLEET_RP2040_UART_H
#define BOARDFLEET_RP2040_UART_H

#include <stdint.h>

#include "../uart.h"

#define UART_TX_PIN 0u
#define UART_RX_PIN 1u

/* Whether a received byte is waiting on either port, checked before the core sleeps. */
uint8_t uart_available(void);
/* UART0's interrupt handler (vector table). */
void uart0_irq(void);

#endif
