/*
 * Constants kept in flash. The AVR reads flash through its own instructions (avr/pgmspace.h); on
 * the RP2040 flash and RAM share one address space, so the same code reads constants directly.
 */
#ifndef BOARDFLEET_PROGMEM_H
#define BOARDFLEET_PROGMEM_H

#if defined(__AVR__)
#include <avr/pgmspace.h>
#else
#include <stdint.h>

#define PROGMEM
#define PGM_P const char *
#define PSTR(text) (text)
#define pgm_read_byte(address) (*(const uint8_t *)(address))
#endif

#endif
