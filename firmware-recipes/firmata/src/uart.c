#include "uart.h"

#include <avr/interrupt.h>
#include <avr/io.h>
#include <util/atomic.h>

/* Powers of two so the index wraps with a mask. 128 bytes of receive buffer absorb a burst of
 * host commands (johnny-five sends several at once) while the loop is busy sampling the ADC. */
#define RX_SIZE 128
#define TX_SIZE 64

static volatile uint8_t rx_buffer[RX_SIZE];
static volatile uint8_t rx_head;
static volatile uint8_t rx_tail;
static volatile uint8_t tx_buffer[TX_SIZE];
static volatile uint8_t tx_head;
static volatile uint8_t tx_tail;

void uart_init(uint32_t baud) {
    /* Double speed mode: closer divisors at 57600 and 115200 baud from a 16 MHz clock. */
    UCSR0A = _BV(U2X0);
    uint16_t divisor = (uint16_t)((F_CPU / 4 / baud - 1) / 2);
    UBRR0H = (uint8_t)(divisor >> 8);
    UBRR0L = (uint8_t)divisor;
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
}

#if defined(USART0_RX_vect)
#define UART_RX_VECTOR USART0_RX_vect
#define UART_UDRE_VECTOR USART0_UDRE_vect
#else
#define UART_RX_VECTOR USART_RX_vect
#define UART_UDRE_VECTOR USART_UDRE_vect
#endif

ISR(UART_RX_VECTOR) {
    uint8_t byte = UDR0;
    uint8_t next = (uint8_t)((rx_head + 1) & (RX_SIZE - 1));
    /* A full buffer drops the byte: the parser resynchronises on the next command byte. */
    if (next != rx_tail) {
        rx_buffer[rx_head] = byte;
        rx_head = next;
    }
}

/* Enabled only while bytes wait, and disabled as it sends the last one: it never runs with an
 * empty buffer, so it needs no check for one. */
ISR(UART_UDRE_VECTOR) {
    UDR0 = tx_buffer[tx_tail];
    tx_tail = (uint8_t)((tx_tail + 1) & (TX_SIZE - 1));
    if (tx_head == tx_tail) UCSR0B &= (uint8_t)~_BV(UDRIE0);
}

int16_t uart_read(void) {
    if (rx_head == rx_tail) return -1;
    uint8_t byte = rx_buffer[rx_tail];
    rx_tail = (uint8_t)((rx_tail + 1) & (RX_SIZE - 1));
    return byte;
}

void uart_write(uint8_t byte) {
    /* An idle transmitter takes the byte at once. With nothing queued the interrupt is off, so
     * this cannot race it. */
    if (tx_head == tx_tail && (UCSR0A & _BV(UDRE0))) {
        UDR0 = byte;
        return;
    }
    uint8_t next = (uint8_t)((tx_head + 1) & (TX_SIZE - 1));
    while (next == tx_tail) {
        /* Wait for the UDRE interrupt to make room. */
    }
    tx_buffer[tx_head] = byte;
    /* Atomic: the interrupt clears UDRIE0 in the same register when it drains the buffer. */
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        tx_head = next;
        UCSR0B |= _BV(UDRIE0);
    }
}
