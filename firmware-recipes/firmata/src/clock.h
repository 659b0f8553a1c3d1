/* Milliseconds since start: on the AVR from the Timer0 overflow (Timer0 also drives PWM on D5 and
 * D6), on the RP2040 from its microsecond timer. */
#ifndef BOARDFLEET_CLOCK_H
#define BOARDFLEET_CLOCK_H

#include <stdint.h>

void clock_init(void);
uint32_t clock_millis(void);

#endif
