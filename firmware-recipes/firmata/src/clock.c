#include "clock.h"

#include <avr/interrupt.h>
#include <avr/io.h>
#include <util/atomic.h>

/* Timer0 runs with a /64 prescaler and overflows every 256 ticks. */
#define MICROS_PER_OVERFLOW ((uint16_t)(64UL * 256UL * 1000UL / (F_CPU / 1000UL)))

static volatile uint32_t millis_count;
static volatile uint16_t micros_remainder;

void clock_init(void) {
    /* Fast PWM, so the same timer serves analogWrite on D5/D6 with a ~1 kHz carrier. */
    TCCR0A = _BV(WGM01) | _BV(WGM00);
    TCCR0B = _BV(CS01) | _BV(CS00);
    TIMSK0 = _BV(TOIE0);
}

ISR(TIMER0_OVF_vect) {
    uint16_t micros = (uint16_t)(micros_remainder + MICROS_PER_OVERFLOW);
    while (micros >= 1000) {
        micros -= 1000;
        millis_count++;
    }
    micros_remainder = micros;
}

uint32_t clock_millis(void) {
    uint32_t now;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        now = millis_count;
    }
    return now;
}
