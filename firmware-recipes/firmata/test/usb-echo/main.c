/*
 * Test firmware for the USB CDC-ACM driver: greets the host once it opens the port, then echoes
 * every byte it receives. Built by pico-usb-cdc.test.ts with the Pico firmware's startup, boot2
 * and clocks, and run in rp2040js against its USB host.
 */
#include <stdint.h>

#include "../../src/rp2040/clock.h"
#include "../../src/rp2040/usb-cdc.h"

static const char greeting[] = "usb-echo\n";

static uint8_t greeted;

static uint8_t work_waiting(void) {
    return usb_cdc_available() || (!greeted && usb_cdc_connected());
}

/* Sleeps until an interrupt; masked while deciding, so one arriving before WFI still wakes it. */
static void sleep_until_work(void) {
    __asm__ volatile("cpsid i" ::: "memory");
    if (!work_waiting()) __asm__ volatile("wfi");
    __asm__ volatile("cpsie i" ::: "memory");
}

int main(void) {
    clock_init();
    usb_cdc_init();
    for (;;) {
        if (!greeted && usb_cdc_connected()) {
            for (const char *character = greeting; *character; character++) usb_cdc_write((uint8_t)*character);
            greeted = 1;
        }
        for (int16_t byte; (byte = usb_cdc_read()) >= 0;) usb_cdc_write((uint8_t)byte);
        sleep_until_work();
    }
}
