/* What the Pico tells the host about itself: one CDC-ACM serial port, 2E8A:000A "BoardfleetFirmata". */
#ifndef BOARDFLEET_USB_DESCRIPTORS_H
#define BOARDFLEET_USB_DESCRIPTORS_H

#include <stdint.h>

#define USB_EP0_MAX_PACKET 64u
#define USB_CDC_NOTIFY_ENDPOINT 1u /* interrupt IN; declared because CDC-ACM requires it, never sent on */
#define USB_CDC_NOTIFY_MAX_PACKET 8u
#define USB_CDC_DATA_ENDPOINT 2u /* bulk IN and bulk OUT */
#define USB_CDC_DATA_MAX_PACKET 64u
#define USB_CONFIGURATION_VALUE 1u

struct usb_descriptor {
    const uint8_t *bytes;
    uint16_t length;
};

/* The descriptor GET_DESCRIPTOR asks for (wValue: type << 8 | index), or length 0 if there is none. */
struct usb_descriptor usb_descriptor_find(uint16_t type_and_index);

#endif
