/* Servo pulses on any digital pin, timed by the AVR's Timer1 one pin after another in a 20 ms frame. */
#ifndef BOARDFLEET_SERVO_H
#define BOARDFLEET_SERVO_H

#include <stdint.h>

#define SERVO_DEFAULT_MIN_US 544
#define SERVO_DEFAULT_MAX_US 2400

#if defined(__AVR__)
/* Returns 0 when every servo slot is taken. Re-attaching a pin only updates its limits. */
uint8_t servo_attach(uint8_t pin, uint16_t min_us, uint16_t max_us);
void servo_detach(uint8_t pin);
void servo_detach_all(void);
/* Values below the minimum pulse width are angles in degrees; larger ones are microseconds. */
void servo_write(uint8_t pin, uint16_t value);
#else
/* No servo driver on this chip: no pin offers SERVO mode, so Firmata never attaches one and has
 * nothing to detach. */
static inline uint8_t servo_attach(uint8_t pin, uint16_t min_us, uint16_t max_us) {
    (void)pin;
    (void)min_us;
    (void)max_us;
    return 0;
}
static inline void servo_detach(uint8_t pin) {
    (void)pin;
}
static inline void servo_detach_all(void) {}
static inline void servo_write(uint8_t pin, uint16_t value) {
    (void)pin;
    (void)value;
}
#endif

#endif
