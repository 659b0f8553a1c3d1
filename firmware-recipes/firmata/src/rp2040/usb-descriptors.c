/*
 * The device, configuration and string descriptors (USB 2.0 chapter 9, CDC 1.2 for the class
 * parts). Composite with an interface association, as Windows and Linux both expect of a CDC-ACM
 * function: the communications interface (with its interrupt endpoint) and the data interface.
 */
#include "usb-descriptors.h"

#define DESCRIPTOR_DEVICE 1u
#define DESCRIPTOR_CONFIGURATION 2u
#define DESCRIPTOR_STRING 3u
#define DESCRIPTOR_INTERFACE 4u
#define DESCRIPTOR_ENDPOINT 5u
#define DESCRIPTOR_INTERFACE_ASSOCIATION 11u
#define DESCRIPTOR_CS_INTERFACE 0x24u

#define CLASS_MISCELLANEOUS 0xEFu /* with subclass 2, protocol 1: "this device uses interface associations" */
#define CLASS_CDC 0x02u
#define CLASS_CDC_DATA 0x0Au
#define CDC_SUBCLASS_ACM 0x02u
#define ENDPOINT_BULK 2u
#define ENDPOINT_INTERRUPT 3u
#define ENDPOINT_IN 0x80u

/* Raspberry Pi's vendor id, and the product id it gives Pico firmware with a CDC serial port. */
#define VENDOR_ID 0x2E8Au
#define PRODUCT_ID 0x000Au

#define LOW(word) ((uint8_t)((word) & 0xFFu))
#define HIGH(word) ((uint8_t)((word) >> 8))

enum { STRING_LANGUAGES, STRING_MANUFACTURER, STRING_PRODUCT, STRING_COUNT };

static const uint8_t device_descriptor[] = {
    18, DESCRIPTOR_DEVICE, LOW(0x0200), HIGH(0x0200), /* USB 2.0 */
    CLASS_MISCELLANEOUS, 2, 1, USB_EP0_MAX_PACKET,
    LOW(VENDOR_ID), HIGH(VENDOR_ID), LOW(PRODUCT_ID), HIGH(PRODUCT_ID),
    LOW(0x0100), HIGH(0x0100), /* device release 1.00 */
    STRING_MANUFACTURER, STRING_PRODUCT, 0, /* no serial number string */
    1,                                      /* configurations */
};

#define CONFIGURATION_LENGTH 75u

static const uint8_t configuration_descriptor[CONFIGURATION_LENGTH] = {
    9, DESCRIPTOR_CONFIGURATION, LOW(CONFIGURATION_LENGTH), HIGH(CONFIGURATION_LENGTH),
    2, USB_CONFIGURATION_VALUE, 0, 0x80, 50, /* 2 interfaces; bus powered, up to 100 mA */

    8, DESCRIPTOR_INTERFACE_ASSOCIATION, 0, 2, CLASS_CDC, CDC_SUBCLASS_ACM, 0, 0,

    /* Interface 0: CDC communications, ACM, no AT commands. */
    9, DESCRIPTOR_INTERFACE, 0, 0, 1, CLASS_CDC, CDC_SUBCLASS_ACM, 0, 0,
    5, DESCRIPTOR_CS_INTERFACE, 0x00, LOW(0x0110), HIGH(0x0110), /* header, CDC 1.10 */
    5, DESCRIPTOR_CS_INTERFACE, 0x01, 0x00, 1,                   /* call management: data on interface 1 */
    4, DESCRIPTOR_CS_INTERFACE, 0x02, 0x02,                      /* ACM: line coding and line state */
    5, DESCRIPTOR_CS_INTERFACE, 0x06, 0, 1,                      /* union: 0 controls 1 */
    7, DESCRIPTOR_ENDPOINT, ENDPOINT_IN | USB_CDC_NOTIFY_ENDPOINT, ENDPOINT_INTERRUPT,
    LOW(USB_CDC_NOTIFY_MAX_PACKET), HIGH(USB_CDC_NOTIFY_MAX_PACKET), 16, /* polled every 16 ms */

    /* Interface 1: CDC data, a bulk pair. */
    9, DESCRIPTOR_INTERFACE, 1, 0, 2, CLASS_CDC_DATA, 0, 0, 0,
    7, DESCRIPTOR_ENDPOINT, USB_CDC_DATA_ENDPOINT, ENDPOINT_BULK,
    LOW(USB_CDC_DATA_MAX_PACKET), HIGH(USB_CDC_DATA_MAX_PACKET), 0,
    7, DESCRIPTOR_ENDPOINT, ENDPOINT_IN | USB_CDC_DATA_ENDPOINT, ENDPOINT_BULK,
    LOW(USB_CDC_DATA_MAX_PACKET), HIGH(USB_CDC_DATA_MAX_PACKET), 0,
};

static const uint8_t languages_descriptor[] = {4, DESCRIPTOR_STRING, LOW(0x0409), HIGH(0x0409)}; /* en-US */

static const char *const strings[STRING_COUNT] = {
    [STRING_MANUFACTURER] = "Boardfleet",
    [STRING_PRODUCT] = "BoardfleetFirmata",
};

/* String descriptors are UTF-16LE; ours are ASCII, widened here rather than stored twice as wide. */
static struct usb_descriptor string_descriptor(uint8_t index) {
    static uint8_t widened[2u + 2u * 32u];
    if (index == STRING_LANGUAGES)
        return (struct usb_descriptor){languages_descriptor, sizeof languages_descriptor};
    if (index >= STRING_COUNT) return (struct usb_descriptor){0, 0};
    uint16_t length = 2u;
    for (const char *character = strings[index]; *character && length < sizeof widened; character++) {
        widened[length++] = (uint8_t)*character;
        widened[length++] = 0u;
    }
    widened[0] = (uint8_t)length;
    widened[1] = DESCRIPTOR_STRING;
    return (struct usb_descriptor){widened, length};
}

struct usb_descriptor usb_descriptor_find(uint16_t type_and_index) {
    const uint8_t index = LOW(type_and_index);
    switch (HIGH(type_and_index)) {
    case DESCRIPTOR_DEVICE:
        return (struct usb_descriptor){device_descriptor, sizeof device_descriptor};
    case DESCRIPTOR_CONFIGURATION:
        return (struct usb_descriptor){configuration_descriptor, sizeof configuration_descriptor};
    case DESCRIPTOR_STRING:
        return string_descriptor(index);
    default:
        /* Among others the device qualifier, which a full-speed-only device must refuse. */
        return (struct usb_descriptor){0, 0};
    }
}
