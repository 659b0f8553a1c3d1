/* clk_usb: the 48 MHz the USB controller needs, from PLL_USB. */
#ifndef BOARDFLEET_USB_CLOCK_H
#define BOARDFLEET_USB_CLOCK_H

/* Needs the crystal running (clock_init() starts it). */
void usb_clock_init(void);

#endif
