/* Milliseconds since start, from the Timer0 overflow (Timer0 also drives PWM on D5 and D6). */
#ifndef BOARDFLEET_CLOCK_H
#define BOARDFLEET_CLOCK_H

#include <stdint.h>

void clock_init(void);
uint32_t clock_millis(void);

#endif
