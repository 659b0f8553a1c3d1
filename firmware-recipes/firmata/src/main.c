/* Boardfleet Firmata: a Firmata 2.6 firmware for johnny-five and other Firmata hosts. */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/wdt.h>

#include "analog-io.h"
#include "clock.h"
#include "firmata.h"
#include "uart.h"

#ifndef FIRMATA_BAUD
#error "FIRMATA_BAUD comes from recipe.yaml"
#endif

/* A watchdog left running by a previous program or bootloader would reset us in a loop. It
 * runs from .init3, before the C runtime clears RAM, which can outlast the shortest timeout. */
void disable_watchdog(void) __attribute__((naked, used, section(".init3")));
void disable_watchdog(void) {
    MCUSR = 0;
    wdt_disable();
}

int main(void) {
    clock_init();
    analog_io_init();
    uart_init(FIRMATA_BAUD);
    firmata_reset();
    sei();
    firmata_announce();
    for (;;) {
        for (int16_t byte = uart_read(); byte >= 0; byte = uart_read()) firmata_receive((uint8_t)byte);
        firmata_report_digital_changes();
        firmata_report_analog_if_due(clock_millis());
    }
}
