#include "pins.h"

#include <avr/io.h>
#include <avr/pgmspace.h>
#include <util/atomic.h>

#define REG(address) (*(volatile uint8_t *)(uint16_t)(address))
#define PIN_REG(def) REG((def).pin_register)
#define DDR_REG(def) REG((def).pin_register + 1)
#define PORT_REG(def) REG((def).pin_register + 2)

#define DIGITAL (PIN_CAN_DIGITAL | PIN_CAN_SERVO)
#define DIGITAL_PWM (PIN_CAN_DIGITAL | PIN_CAN_SERVO | PIN_CAN_PWM)
#define DIGITAL_ANALOG (PIN_CAN_DIGITAL | PIN_CAN_SERVO | PIN_CAN_ANALOG)

/* Kept in flash: the table is read-only and RAM is the scarcer resource on a 328P. */
#if defined(__AVR_ATmega328P__) || defined(__AVR_ATmega328__)
static const struct pin_definition pin_table[TOTAL_PINS] PROGMEM = {
    {_SFR_MEM_ADDR(PIND), _BV(0), PWM_NONE, NO_ANALOG_CHANNEL, 0},
    {_SFR_MEM_ADDR(PIND), _BV(1), PWM_NONE, NO_ANALOG_CHANNEL, 0},
    {_SFR_MEM_ADDR(PIND), _BV(2), PWM_NONE, NO_ANALOG_CHANNEL, DIGITAL},
    {_SFR_MEM_ADDR(PIND), _BV(3), PWM_TIMER2_B, NO_ANALOG_CHANNEL, DIGITAL_PWM},
    {_SFR_MEM_ADDR(PIND), _BV(4), PWM_NONE, NO_ANALOG_CHANNEL, DIGITAL},
    {_SFR_MEM_ADDR(PIND), _BV(5), PWM_TIMER0_B, NO_ANALOG_CHANNEL, DIGITAL_PWM},
    {_SFR_MEM_ADDR(PIND), _BV(6), PWM_TIMER0_A, NO_ANALOG_CHANNEL, DIGITAL_PWM},
    {_SFR_MEM_ADDR(PIND), _BV(7), PWM_NONE, NO_ANALOG_CHANNEL, DIGITAL},
    {_SFR_MEM_ADDR(PINB), _BV(0), PWM_NONE, NO_ANALOG_CHANNEL, DIGITAL},
    {_SFR_MEM_ADDR(PINB), _BV(1), PWM_TIMER1_A, NO_ANALOG_CHANNEL, DIGITAL_PWM},
    {_SFR_MEM_ADDR(PINB), _BV(2), PWM_TIMER1_B, NO_ANALOG_CHANNEL, DIGITAL_PWM},
    {_SFR_MEM_ADDR(PINB), _BV(3), PWM_TIMER2_A, NO_ANALOG_CHANNEL, DIGITAL_PWM},
    {_SFR_MEM_ADDR(PINB), _BV(4), PWM_NONE, NO_ANALOG_CHANNEL, DIGITAL},
    {_SFR_MEM_ADDR(PINB), _BV(5), PWM_NONE, NO_ANALOG_CHANNEL, DIGITAL},
    {_SFR_MEM_ADDR(PINC), _BV(0), PWM_NONE, 0, DIGITAL_ANALOG},
    {_SFR_MEM_ADDR(PINC), _BV(1), PWM_NONE, 1, DIGITAL_ANALOG},
    {_SFR_MEM_ADDR(PINC), _BV(2), PWM_NONE, 2, DIGITAL_ANALOG},
    {_SFR_MEM_ADDR(PINC), _BV(3), PWM_NONE, 3, DIGITAL_ANALOG},
    {_SFR_MEM_ADDR(PINC), _BV(4), PWM_NONE, 4, DIGITAL_ANALOG},
    {_SFR_MEM_ADDR(PINC), _BV(5), PWM_NONE, 5, DIGITAL_ANALOG},
#if defined(BOARD_HAS_ADC6_ADC7)
    /* No port behind ADC6/ADC7: a zero mask makes every digital access a no-op. */
    {_SFR_MEM_ADDR(PINC), 0, PWM_NONE, 6, PIN_CAN_ANALOG},
    {_SFR_MEM_ADDR(PINC), 0, PWM_NONE, 7, PIN_CAN_ANALOG},
#endif
};
#elif defined(__AVR_ATmega2560__)
#define PIN(port, bit) _SFR_MEM_ADDR(PIN##port), _BV(bit)
#define D(port, bit) {PIN(port, bit), PWM_NONE, NO_ANALOG_CHANNEL, DIGITAL}
#define P(port, bit, pwm) {PIN(port, bit), pwm, NO_ANALOG_CHANNEL, DIGITAL_PWM}
#define A(port, bit, channel) {PIN(port, bit), PWM_NONE, channel, DIGITAL_ANALOG}
static const struct pin_definition pin_table[TOTAL_PINS] PROGMEM = {
    {PIN(E, 0), PWM_NONE, NO_ANALOG_CHANNEL, 0},
    {PIN(E, 1), PWM_NONE, NO_ANALOG_CHANNEL, 0},
    P(E, 4, PWM_TIMER3_B), P(E, 5, PWM_TIMER3_C), P(G, 5, PWM_TIMER0_B), P(E, 3, PWM_TIMER3_A),
    P(H, 3, PWM_TIMER4_A), P(H, 4, PWM_TIMER4_B), P(H, 5, PWM_TIMER4_C), P(H, 6, PWM_TIMER2_B),
    P(B, 4, PWM_TIMER2_A), P(B, 5, PWM_TIMER1_A), P(B, 6, PWM_TIMER1_B), P(B, 7, PWM_TIMER0_A),
    D(J, 1), D(J, 0), D(H, 1), D(H, 0), D(D, 3), D(D, 2), D(D, 1), D(D, 0),
    D(A, 0), D(A, 1), D(A, 2), D(A, 3), D(A, 4), D(A, 5), D(A, 6), D(A, 7),
    D(C, 7), D(C, 6), D(C, 5), D(C, 4), D(C, 3), D(C, 2), D(C, 1), D(C, 0),
    D(D, 7), D(G, 2), D(G, 1), D(G, 0), D(L, 7), D(L, 6),
    P(L, 5, PWM_TIMER5_C), P(L, 4, PWM_TIMER5_B), P(L, 3, PWM_TIMER5_A),
    D(L, 2), D(L, 1), D(L, 0), D(B, 3), D(B, 2), D(B, 1), D(B, 0),
    A(F, 0, 0), A(F, 1, 1), A(F, 2, 2), A(F, 3, 3), A(F, 4, 4), A(F, 5, 5), A(F, 6, 6), A(F, 7, 7),
    A(K, 0, 8), A(K, 1, 9), A(K, 2, 10), A(K, 3, 11), A(K, 4, 12), A(K, 5, 13), A(K, 6, 14), A(K, 7, 15),
};
#endif

static struct pin_definition load(uint8_t pin) {
    struct pin_definition def;
    memcpy_P(&def, &pin_table[pin], sizeof def);
    return def;
}

uint8_t pin_capabilities(uint8_t pin) {
    return pin < TOTAL_PINS ? pgm_read_byte(&pin_table[pin].capabilities) : 0;
}

uint8_t pin_analog_channel(uint8_t pin) {
    return pin < TOTAL_PINS ? pgm_read_byte(&pin_table[pin].analog_channel) : NO_ANALOG_CHANNEL;
}

uint8_t pin_pwm_channel(uint8_t pin) {
    return pin < TOTAL_PINS ? pgm_read_byte(&pin_table[pin].pwm) : PWM_NONE;
}

uint8_t analog_channel_pin(uint8_t channel) {
    for (uint8_t pin = 0; pin < TOTAL_PINS; pin++) {
        if (pin_analog_channel(pin) == channel) return pin;
    }
    return NO_ANALOG_CHANNEL;
}

/* Read-modify-write of a port register must not be split by the servo interrupt, which
 * writes the same registers. */
void pin_set_output(uint8_t pin, uint8_t is_output) {
    struct pin_definition def = load(pin);
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        if (is_output) {
            DDR_REG(def) |= def.bit_mask;
        } else {
            DDR_REG(def) &= (uint8_t)~def.bit_mask;
        }
    }
}

void pin_write(uint8_t pin, uint8_t high) {
    struct pin_definition def = load(pin);
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        if (high) {
            PORT_REG(def) |= def.bit_mask;
        } else {
            PORT_REG(def) &= (uint8_t)~def.bit_mask;
        }
    }
}

/* An input's PORTx bit switches its pull-up. */
void pin_set_pullup(uint8_t pin, uint8_t enabled) {
    pin_write(pin, enabled);
}

uint8_t pin_read(uint8_t pin) {
    struct pin_definition def = load(pin);
    return (PIN_REG(def) & def.bit_mask) ? 1 : 0;
}


volatile uint8_t *pin_port_register(uint8_t pin) {
    return &PORT_REG(load(pin));
}

uint8_t pin_bit_mask(uint8_t pin) {
    return load(pin).bit_mask;
}
