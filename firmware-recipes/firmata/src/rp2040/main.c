/*
 * Boardfleet Firmata on the RP2040: the shared protocol (../firmata.c) over UART0 and the USB
 * serial port at once (uart.c joins them). Between events the core sleeps (WFI) until a byte
 * arrives, a USB event, or the next millisecond: that saves power on a board, and lets rp2040js
 * skip the idle time instead of running a busy loop at 125 MHz. Waking each millisecond is what
 * polls the reported inputs and times the analog samples.
 */
#include <stdint.h>

#include "../analog-io.h"
#include "../firmata.h"
#include "clock.h"
#include "resets.h"
#include "rp2040-registers.h"
#include "uart.h"
#include "usb-cdc.h"

#ifndef FIRMATA_BAUD
#error "FIRMATA_BAUD comes from recipe.yaml"
#endif

#define POLL_INTERVAL_MS 1u

/* Sleeps until an interrupt: a byte on either port, a USB event, or the timer at `millis`.
 * Interrupts are masked while deciding, so one between the check and WFI still ends the WFI (it
 * stays pending). */
static void sleep_until(uint32_t millis) {
    __asm__ volatile("cpsid i" ::: "memory");
    clock_wake_at(millis);
    if (!uart_available() && (int32_t)(clock_millis() - millis) < 0) __asm__ volatile("wfi");
    __asm__ volatile("cpsie i" ::: "memory");
}

int main(void) {
    clock_init();
    usb_cdc_init();
    resets_release(RESET_IO_BANK0 | RESET_PADS_BANK0);
    analog_io_init();
    uart_init(FIRMATA_BAUD);
    firmata_reset();
    firmata_announce();
    uint8_t usb_was_connected = 0;
    for (;;) {
        /* A host opening the USB port (raising DTR) expects the version report, as it would from
         * a board its opening resets; UART0's host sees it again too, which Firmata allows. */
        const uint8_t usb_connected = usb_cdc_connected();
        if (usb_connected && !usb_was_connected) firmata_announce();
        usb_was_connected = usb_connected;
        for (int16_t byte; (byte = uart_read()) >= 0;) firmata_receive((uint8_t)byte);
        firmata_report_digital_changes();
        const uint32_t now = clock_millis();
        firmata_report_analog_if_due(now);
        sleep_until(now + POLL_INTERVAL_MS);
    }
}
