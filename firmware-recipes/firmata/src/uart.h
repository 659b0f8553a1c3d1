/* Interrupt-driven USART0: received bytes wait in a ring buffer until the main loop reads them. */
#ifndef BOARDFLEET_UART_H
#define BOARDFLEET_UART_H

#include <stdint.h>

void uart_init(uint32_t baud);
/* Returns the next received byte, or -1 when none is waiting. */
int16_t uart_read(void);
/* Queues a byte for sending; waits only when the transmit buffer is full. */
void uart_write(uint8_t byte);

#endif
