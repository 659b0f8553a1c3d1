/* Servo pulses on any digital pin, timed by Timer1 one pin after another in a 20 ms frame. */
#ifndef BOARDFLEET_SERVO_H
#define BOARDFLEET_SERVO_H

#include <stdint.h>

#define SERVO_DEFAULT_MIN_US 544
#define SERVO_DEFAULT_MAX_US 2400

/* Returns 0 when every servo slot is taken. Re-attaching a pin only updates its limits. */
uint8_t servo_attach(uint8_t pin, uint16_t min_us, uint16_t max_us);
void servo_detach(uint8_t pin);
void servo_detach_all(void);
/* Values below the minimum pulse width are angles in degrees; larger ones are microseconds. */
void servo_write(uint8_t pin, uint16_t value);

#endif
