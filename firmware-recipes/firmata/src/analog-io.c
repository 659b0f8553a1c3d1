#include "analog-io.h"

#include <avr/io.h>

#include "pins.h"

void analog_io_init(void) {
    /* AVcc reference; /128 keeps the ADC clock at 125 kHz, inside its 50-200 kHz range. */
    ADMUX = _BV(REFS0);
    ADCSRA = _BV(ADEN) | _BV(ADPS2) | _BV(ADPS1) | _BV(ADPS0);
    pwm_reclaim_timer1();
    /* Timer2: phase-correct PWM, /64, like the Arduino core, so duty cycles match sketches. */
    TCCR2A = _BV(WGM20);
    TCCR2B = _BV(CS22);
#if defined(TCCR5A)
    /* The Mega's extra timers, set up the same way. */
    TCCR3A = _BV(WGM30);
    TCCR3B = _BV(CS31) | _BV(CS30);
    TCCR4A = _BV(WGM40);
    TCCR4B = _BV(CS41) | _BV(CS40);
    TCCR5A = _BV(WGM50);
    TCCR5B = _BV(CS51) | _BV(CS50);
#endif
}

uint16_t adc_read(uint8_t channel) {
#if defined(MUX5)
    /* Channels 8-15 of the Mega's ADC are selected by MUX5, which lives in ADCSRB. */
    ADCSRB = (channel & 0x08) ? _BV(MUX5) : 0;
#endif
    ADMUX = (uint8_t)(_BV(REFS0) | (channel & 0x07));
    ADCSRA |= _BV(ADSC);
    while (ADCSRA & _BV(ADSC)) {
        /* Conversion takes 13 ADC clocks. */
    }
    return ADC;
}

static void connect(uint8_t pwm, uint8_t duty) {
    switch (pwm) {
        case PWM_TIMER0_A: OCR0A = duty; TCCR0A |= _BV(COM0A1); break;
        case PWM_TIMER0_B: OCR0B = duty; TCCR0A |= _BV(COM0B1); break;
        case PWM_TIMER1_A: OCR1A = duty; TCCR1A |= _BV(COM1A1); break;
        case PWM_TIMER1_B: OCR1B = duty; TCCR1A |= _BV(COM1B1); break;
        case PWM_TIMER2_A: OCR2A = duty; TCCR2A |= _BV(COM2A1); break;
        case PWM_TIMER2_B: OCR2B = duty; TCCR2A |= _BV(COM2B1); break;
#if defined(TCCR5A)
        case PWM_TIMER3_A: OCR3A = duty; TCCR3A |= _BV(COM3A1); break;
        case PWM_TIMER3_B: OCR3B = duty; TCCR3A |= _BV(COM3B1); break;
        case PWM_TIMER3_C: OCR3C = duty; TCCR3A |= _BV(COM3C1); break;
        case PWM_TIMER4_A: OCR4A = duty; TCCR4A |= _BV(COM4A1); break;
        case PWM_TIMER4_B: OCR4B = duty; TCCR4A |= _BV(COM4B1); break;
        case PWM_TIMER4_C: OCR4C = duty; TCCR4A |= _BV(COM4C1); break;
        case PWM_TIMER5_A: OCR5A = duty; TCCR5A |= _BV(COM5A1); break;
        case PWM_TIMER5_B: OCR5B = duty; TCCR5A |= _BV(COM5B1); break;
        case PWM_TIMER5_C: OCR5C = duty; TCCR5A |= _BV(COM5C1); break;
#endif
        default: break;
    }
}

static void disconnect(uint8_t pwm) {
    switch (pwm) {
        case PWM_TIMER0_A: TCCR0A &= (uint8_t)~_BV(COM0A1); break;
        case PWM_TIMER0_B: TCCR0A &= (uint8_t)~_BV(COM0B1); break;
        case PWM_TIMER1_A: TCCR1A &= (uint8_t)~_BV(COM1A1); break;
        case PWM_TIMER1_B: TCCR1A &= (uint8_t)~_BV(COM1B1); break;
        case PWM_TIMER2_A: TCCR2A &= (uint8_t)~_BV(COM2A1); break;
        case PWM_TIMER2_B: TCCR2A &= (uint8_t)~_BV(COM2B1); break;
#if defined(TCCR5A)
        case PWM_TIMER3_A: TCCR3A &= (uint8_t)~_BV(COM3A1); break;
        case PWM_TIMER3_B: TCCR3A &= (uint8_t)~_BV(COM3B1); break;
        case PWM_TIMER3_C: TCCR3A &= (uint8_t)~_BV(COM3C1); break;
        case PWM_TIMER4_A: TCCR4A &= (uint8_t)~_BV(COM4A1); break;
        case PWM_TIMER4_B: TCCR4A &= (uint8_t)~_BV(COM4B1); break;
        case PWM_TIMER4_C: TCCR4A &= (uint8_t)~_BV(COM4C1); break;
        case PWM_TIMER5_A: TCCR5A &= (uint8_t)~_BV(COM5A1); break;
        case PWM_TIMER5_B: TCCR5A &= (uint8_t)~_BV(COM5B1); break;
        case PWM_TIMER5_C: TCCR5A &= (uint8_t)~_BV(COM5C1); break;
#endif
        default: break;
    }
}

static uint8_t timer1_owned_by_servo;

void pwm_write(uint8_t pin, uint8_t duty) {
    uint8_t pwm = pin_pwm_channel(pin);
    if ((pwm == PWM_TIMER1_A || pwm == PWM_TIMER1_B) && timer1_owned_by_servo) return;
    /* Fast PWM still emits a one-tick spike at 0 and never reaches a full 255: drive the
     * pin steadily at the extremes instead. */
    if (duty == 0 || duty == 255) {
        disconnect(pwm);
        pin_write(pin, duty == 255);
        return;
    }
    connect(pwm, duty);
}

void pwm_stop(uint8_t pin) {
    disconnect(pin_pwm_channel(pin));
}

void pwm_release_timer1(void) {
    timer1_owned_by_servo = 1;
}

void pwm_reclaim_timer1(void) {
    timer1_owned_by_servo = 0;
    /* Phase-correct 8-bit PWM, /64. */
    TIMSK1 = 0;
    TCCR1A = _BV(WGM10);
    TCCR1B = _BV(CS11) | _BV(CS10);
    TCNT1 = 0;
}
