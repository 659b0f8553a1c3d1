/*
 * Pin numbering, as the Firmata host sees it, mapped onto the chip's GPIO: on AVR boards Firmata
 * pin N is Arduino pin N, on the RP2040 it is GPn, so sketches, johnny-five and wiring diagrams
 * agree.
 */
#ifndef BOARDFLEET_PINS_H
#define BOARDFLEET_PINS_H

#include <stdint.h>

#define PIN_CAN_DIGITAL 0x01
#define PIN_CAN_PWM 0x02
#define PIN_CAN_ANALOG 0x04
#define PIN_CAN_SERVO 0x08

#define NO_ANALOG_CHANNEL 0x7F

#if defined(__AVR__)
/* Which timer output compare unit drives a PWM-capable pin. */
enum pwm_channel {
    PWM_NONE = 0,
    PWM_TIMER0_A,
    PWM_TIMER0_B,
    PWM_TIMER1_A,
    PWM_TIMER1_B,
    PWM_TIMER2_A,
    PWM_TIMER2_B,
    PWM_TIMER3_A,
    PWM_TIMER3_B,
    PWM_TIMER3_C,
    PWM_TIMER4_A,
    PWM_TIMER4_B,
    PWM_TIMER4_C,
    PWM_TIMER5_A,
    PWM_TIMER5_B,
    PWM_TIMER5_C,
};

struct pin_definition {
    uint16_t pin_register; /* data-space address of PINx; DDRx and PORTx follow it */
    uint8_t bit_mask;
    uint8_t pwm;
    uint8_t analog_channel;
    uint8_t capabilities;
};

#if defined(__AVR_ATmega328P__) || defined(__AVR_ATmega328__)
/* D0 and D1 carry the serial link to the host, so they offer no modes. A6/A7 exist only on
 * the TQFP package (Nano, Pro Mini) and are analog-only; BOARD_HAS_ADC6_ADC7 enables them. */
#if defined(BOARD_HAS_ADC6_ADC7)
#define TOTAL_PINS 22
#define TOTAL_ANALOG_PINS 8
#else
#define TOTAL_PINS 20
#define TOTAL_ANALOG_PINS 6
#endif
#elif defined(__AVR_ATmega2560__)
/* Mega 2560: D0-D53 digital, A0-A15 are D54-D69. */
#define TOTAL_PINS 70
#define TOTAL_ANALOG_PINS 16
#else
#error "This Firmata firmware supports the ATmega328P (Uno, Nano, Pro Mini) and ATmega2560 (Mega 2560)."
#endif

uint8_t pin_pwm_channel(uint8_t pin);
/* The PORTx register and bit of a pin, for code that must toggle it with the least delay. */
volatile uint8_t *pin_port_register(uint8_t pin);
uint8_t pin_bit_mask(uint8_t pin);
/* The Firmata pin wired to an ADC channel, or 0x7F. */
uint8_t analog_channel_pin(uint8_t channel);
#elif defined(__ARM_ARCH_6M__)
/* The RP2040, the only Cortex-M0+ the recipe lists: GP0-GP28; GP26-GP28 are also ADC inputs 0-2. */
#define TOTAL_PINS 29
#define TOTAL_ANALOG_PINS 3
#else
#error "This Firmata firmware supports the ATmega328P, the ATmega2560 and the RP2040."
#endif

#define TOTAL_PORTS ((TOTAL_PINS + 7) / 8)

uint8_t pin_capabilities(uint8_t pin);
uint8_t pin_analog_channel(uint8_t pin);

void pin_set_output(uint8_t pin, uint8_t is_output);
/* Switches the pull-up of a pin that is an input. */
void pin_set_pullup(uint8_t pin, uint8_t enabled);
void pin_write(uint8_t pin, uint8_t high);
/* The level on the pin, whether it is an input or an output. */
uint8_t pin_read(uint8_t pin);

#endif
