/* ADC sampling and hardware PWM on the timer output compare pins. */
#ifndef BOARDFLEET_ANALOG_IO_H
#define BOARDFLEET_ANALOG_IO_H

#include <stdint.h>

void analog_io_init(void);
/* A 10-bit conversion of the given ADC channel against AVcc; blocks for about 110 us. */
uint16_t adc_read(uint8_t channel);
/* Starts PWM (0-255) on a PWM-capable pin that is already an output. */
void pwm_write(uint8_t pin, uint8_t duty);
/* Disconnects the timer from the pin so it becomes a plain digital pin again. */
void pwm_stop(uint8_t pin);
/* Timer1 drives either PWM on D9/D10 or the servo pulses; the servo driver takes it over. */
void pwm_release_timer1(void);
void pwm_reclaim_timer1(void);

#endif
