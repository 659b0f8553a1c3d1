/* ADC sampling and hardware PWM (the AVR's timer output compare pins, the RP2040's PWM slices). */
#ifndef BOARDFLEET_ANALOG_IO_H
#define BOARDFLEET_ANALOG_IO_H

#include <stdint.h>

/* The resolution the capability response announces. Each chip reports its ADC's real width
 * (the RP2040's 12 bits rather than a scaled-down 10); hosts scale by it. */
#if defined(__AVR__)
#define ADC_RESOLUTION_BITS 10
#else
#define ADC_RESOLUTION_BITS 12
#endif
#define PWM_RESOLUTION_BITS 8

void analog_io_init(void);
/* One conversion of the given ADC channel, ADC_RESOLUTION_BITS wide; blocks until it is done
 * (about 110 us on the AVR, 2 us on the RP2040). */
uint16_t adc_read(uint8_t channel);
/* Starts PWM (0-255) on a PWM-capable pin that is already an output. */
void pwm_write(uint8_t pin, uint8_t duty);
/* Disconnects the PWM from the pin so it becomes a plain digital pin again. */
void pwm_stop(uint8_t pin);
#if defined(__AVR__)
/* Timer1 drives either PWM on D9/D10 or the servo pulses; the servo driver takes it over. */
void pwm_release_timer1(void);
void pwm_reclaim_timer1(void);
#endif

#endif
