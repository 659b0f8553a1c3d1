/*
 * Firmata pin N is GPn. A pin in a digital mode is driven by SIO (output level and enable, read
 * back through its pad); PADS_BANK0 sets its input buffer and pulls. GP0/GP1 carry UART0 to the
 * host, and on the Pico GP23 (the regulator's power-save input) and GP24 (VBUS sense) are wired
 * on the board rather than to the header: those offer no modes.
 */
#include "../pins.h"

#include "rp2040-registers.h"
#include "uart.h"

#define SMPS_MODE_PIN 23u
#define VBUS_SENSE_PIN 24u
#define FIRST_ADC_PIN 26u

uint8_t pin_capabilities(uint8_t pin) {
    if (pin >= TOTAL_PINS || pin == UART_TX_PIN || pin == UART_RX_PIN || pin == SMPS_MODE_PIN ||
        pin == VBUS_SENSE_PIN) {
        return 0;
    }
    return PIN_CAN_DIGITAL | PIN_CAN_PWM | (pin >= FIRST_ADC_PIN ? PIN_CAN_ANALOG : 0);
}

uint8_t pin_analog_channel(uint8_t pin) {
    return pin >= FIRST_ADC_PIN && pin < TOTAL_PINS ? (uint8_t)(pin - FIRST_ADC_PIN) : NO_ANALOG_CHANNEL;
}

/* Hands the pin to SIO (from PWM, or from no function at all after reset). */
void pin_set_output(uint8_t pin, uint8_t is_output) {
    REG32(is_output ? SIO_GPIO_OE_SET : SIO_GPIO_OE_CLR) = 1u << pin;
    REG32(IO_BANK0_GPIO_CTRL(pin)) = GPIO_FUNC_SIO;
}

/* The whole pad register at once: the reset value's pull-down goes too, so an INPUT floats as it
 * does on an AVR. The input buffer stays on, so an output's level reads back. */
void pin_set_pullup(uint8_t pin, uint8_t enabled) {
    REG32(PADS_BANK0_GPIO(pin)) =
        PADS_INPUT_ENABLE | PADS_SCHMITT | PADS_DRIVE_4MA | (enabled ? PADS_PULL_UP : 0u);
}

void pin_write(uint8_t pin, uint8_t high) {
    REG32(high ? SIO_GPIO_OUT_SET : SIO_GPIO_OUT_CLR) = 1u << pin;
}

uint8_t pin_read(uint8_t pin) {
    return (REG32(SIO_GPIO_IN) >> pin) & 1u;
}
