/*
 * The Firmata protocol (version 2.6) as johnny-five and firmata.js speak it: MIDI-style
 * three-byte messages for pin I/O plus sysex messages for queries and configuration.
 */
#ifndef BOARDFLEET_FIRMATA_H
#define BOARDFLEET_FIRMATA_H

#include <stdint.h>

/* Puts every pin and report back to its power-on state. */
void firmata_reset(void);
/* Sends the protocol version and firmware name, as a host expects right after the port opens. */
void firmata_announce(void);
/* Feeds one received byte to the message parser; complete messages are acted on at once. */
void firmata_receive(uint8_t byte);
/* Sends a digital message for each reported port whose input pins changed. */
void firmata_report_digital_changes(void);
/* Sends analog samples when the sampling interval has elapsed since the last ones. */
void firmata_report_analog_if_due(uint32_t now_ms);

#endif
