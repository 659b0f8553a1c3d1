/* A USB CDC-ACM serial port on the RP2040's own USB controller, interrupt driven: the same calls
 * as uart.h, so Firmata can speak on either. */
#ifndef BOARDFLEET_USB_CDC_H
#define BOARDFLEET_USB_CDC_H

#include <stdint.h>

/* Starts PLL_USB and the controller and connects to the host. Needs clock_init() done first. */
void usb_cdc_init(void);
/* Returns the next byte the host sent, or -1 when none is waiting. */
int16_t usb_cdc_read(void);
/* Whether a received byte is waiting. */
uint8_t usb_cdc_available(void);
/* Queues a byte for the host. Dropped while no program has the port open (usb_cdc_connected() is 0);
 * otherwise waits when the 256-byte queue is full, up to 50 ms, then drops it. Call with interrupts enabled. */
void usb_cdc_write(uint8_t byte);
/* 1 once the host has configured the device and a program opened the port (set DTR). */
uint8_t usb_cdc_connected(void);
/* The USB controller's interrupt handler (vector table, USBCTRL_IRQ 5). */
void usbctrl_irq(void);

#endif
