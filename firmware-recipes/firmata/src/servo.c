#include "servo.h"

#include <avr/interrupt.h>
#include <avr/io.h>
#include <util/atomic.h>

#include "analog-io.h"
#include "pins.h"

#define MAX_SERVOS 12
#define FREE_SLOT 0xFF
/* Timer1 at /8: two ticks per microsecond at 16 MHz. */
#define TICKS_PER_US (F_CPU / 8000000UL)
/* Cycles from compare match to the pin write in the interrupt, measured in avr8js: about 64. */
#define ISR_ENTRY_TICKS ((uint16_t)(64 / 8))
#define FRAME_TICKS ((uint16_t)(20000UL * TICKS_PER_US))

struct servo_slot {
    uint8_t pin;
    /* Cached so the interrupt flips the pin within a few cycles, keeping pulses exact. */
    volatile uint8_t *port;
    uint8_t mask;
    uint16_t min_us;
    uint16_t max_us;
    uint16_t pulse_ticks;
};

static struct servo_slot slots[MAX_SERVOS] = {
    [0 ... MAX_SERVOS - 1] = {FREE_SLOT, 0, 0, SERVO_DEFAULT_MIN_US, SERVO_DEFAULT_MAX_US, 0},
};
static volatile int8_t active_slot = -1;
static uint8_t attached_count;

/* Nothing else writes a port register from an interrupt, and main-loop writes are atomic, so
 * the plain read-modify-writes here are safe. */
ISR(TIMER1_COMPA_vect) {
    if (active_slot < 0) {
        TCNT1 = 0;
    } else if (slots[active_slot].pin != FREE_SLOT) {
        *slots[active_slot].port &= (uint8_t)~slots[active_slot].mask;
    }
    int8_t next = (int8_t)(active_slot + 1);
    while (next < MAX_SERVOS && slots[next].pin == FREE_SLOT) next++;
    if (next < MAX_SERVOS) {
        struct servo_slot *slot = &slots[next];
        uint16_t start = TCNT1;
        *slot->port |= slot->mask;
        /* The falling edge comes later by the interrupt's entry time: take it off the pulse. */
        OCR1A = (uint16_t)(start + slot->pulse_ticks - ISR_ENTRY_TICKS);
        active_slot = next;
    } else {
        uint16_t soon = (uint16_t)(TCNT1 + 4);
        OCR1A = soon < FRAME_TICKS ? FRAME_TICKS : soon;
        active_slot = -1;
    }
}

static int8_t find_slot(uint8_t pin) {
    for (int8_t i = 0; i < MAX_SERVOS; i++) {
        if (slots[i].pin == pin) return i;
    }
    return -1;
}

static void start_timer(void) {
    pwm_release_timer1();
    TCCR1A = 0;
    TCCR1B = _BV(CS11);
    TCNT1 = 0;
    active_slot = -1;
    OCR1A = FRAME_TICKS;
    TIFR1 = _BV(OCF1A);
    TIMSK1 = _BV(OCIE1A);
}

static uint16_t pulse_us_for(const struct servo_slot *slot, uint16_t value) {
    if (value < SERVO_DEFAULT_MIN_US) {
        if (value > 180) value = 180;
        return (uint16_t)(slot->min_us + (uint32_t)(slot->max_us - slot->min_us) * value / 180);
    }
    if (value < slot->min_us) return slot->min_us;
    if (value > slot->max_us) return slot->max_us;
    return value;
}

uint8_t servo_attach(uint8_t pin, uint16_t min_us, uint16_t max_us) {
    int8_t index = find_slot(pin);
    if (index < 0) {
        index = find_slot(FREE_SLOT);
        if (index < 0) return 0;
        if (attached_count++ == 0) start_timer();
    }
    struct servo_slot *slot = &slots[index];
    uint16_t centre_us = (uint16_t)((min_us + max_us) / 2);
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        slot->min_us = min_us;
        slot->max_us = max_us;
        slot->pulse_ticks = (uint16_t)(centre_us * TICKS_PER_US);
        slot->port = pin_port_register(pin);
        slot->mask = pin_bit_mask(pin);
        slot->pin = pin;
    }
    return 1;
}

void servo_detach(uint8_t pin) {
    int8_t index = find_slot(pin);
    if (index < 0) return;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        slots[index].pin = FREE_SLOT;
    }
    /* The interrupt no longer sees this pin, so end a pulse it may have left high. */
    pin_write(pin, 0);
    if (--attached_count == 0) pwm_reclaim_timer1();
}

void servo_detach_all(void) {
    for (uint8_t i = 0; i < MAX_SERVOS; i++) {
        if (slots[i].pin != FREE_SLOT) servo_detach(slots[i].pin);
    }
}

void servo_write(uint8_t pin, uint16_t value) {
    int8_t index = find_slot(pin);
    if (index < 0) return;
    uint16_t ticks = (uint16_t)(pulse_us_for(&slots[index], value) * TICKS_PER_US);
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) {
        slots[index].pulse_ticks = ticks;
    }
}
