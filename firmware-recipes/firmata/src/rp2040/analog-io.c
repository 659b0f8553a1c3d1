/*
 * The ADC (12 bits; inputs 0-2 on GP26-GP28) and PWM from the eight PWM slices. GPn and GPn+16
 * share a slice's output, so two such pins in PWM mode show the same duty.
 */
#include "../analog-io.h"

#include "../pins.h"
#include "resets.h"
#include "rp2040-registers.h"

#define PWM_SLICES 8u
/* The counter wraps after 255 steps, so duty 255 (compare 255 > TOP) is high all the time and 0
 * low all the time, like analogWrite. 125 MHz / 245 / 255 = 2 kHz, flicker-free for an LED. */
#define PWM_TOP_VALUE 254u
#define PWM_CLOCK_DIVIDER 245u

void analog_io_init(void) {
    resets_release(RESET_ADC | RESET_PWM);
    REG32(ADC_CS) = ADC_CS_EN;
    for (uint32_t slice = 0; slice < PWM_SLICES; slice++) {
        REG32(PWM_TOP(slice)) = PWM_TOP_VALUE;
        REG32(PWM_DIV(slice)) = PWM_CLOCK_DIVIDER << PWM_DIV_INT_LSB;
        REG32(PWM_CC(slice)) = 0;
        REG32(PWM_CSR(slice)) = PWM_CSR_EN;
    }
}

uint16_t adc_read(uint8_t channel) {
    while (!(REG32(ADC_CS) & ADC_CS_READY)) {
        /* A conversion takes 96 clk_adc cycles. */
    }
    REG32(ADC_CS) = ADC_CS_EN | ((uint32_t)channel << ADC_CS_AINSEL_LSB) | ADC_CS_START_ONCE;
    /* READY drops as the conversion starts; wait for it to rise again. */
    while (!(REG32(ADC_CS) & ADC_CS_READY)) {
    }
    return (uint16_t)(REG32(ADC_RESULT) & 0xFFFu);
}

void pwm_write(uint8_t pin, uint8_t duty) {
    const uint32_t slice = (pin >> 1) % PWM_SLICES;
    const uint32_t shift = (pin & 1u) ? PWM_CC_B_LSB : 0u;
    REG32(PWM_CC(slice)) = (REG32(PWM_CC(slice)) & ~(0xFFFFu << shift)) | ((uint32_t)duty << shift);
    REG32(IO_BANK0_GPIO_CTRL(pin)) = GPIO_FUNC_PWM;
}

void pwm_stop(uint8_t pin) {
    REG32(IO_BANK0_GPIO_CTRL(pin)) = GPIO_FUNC_SIO;
}
