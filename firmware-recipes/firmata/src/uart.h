/*
 * The link to the Firmata host, the protocol's only I/O: the AVR's USART0 or the RP2040's UART0,
 * interrupt-driven, received bytes waiting in a ring buffer until the main loop reads them.
 */
#ifndef BOARDFLEET_UART_H
#define BOARDFLEET_UART_H

#include <stdint.h>

void uart_init(uint32_t baud);
/* Returns the next received byte, or -1 when none is waiting. */
int16_t uart_read(void);
/* Queues a byte for sending; waits only when the transmit buffer (or FIFO) is full. */
void uart_write(uint8_t byte);

#endif
