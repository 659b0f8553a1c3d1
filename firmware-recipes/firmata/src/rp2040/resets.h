/* Peripherals start held in reset; each is released once, by the code that first uses it. */
#ifndef BOARDFLEET_RESETS_H
#define BOARDFLEET_RESETS_H

#include <stdint.h>

#include "rp2040-registers.h"

static inline void resets_release(uint32_t peripherals) {
    REG_SET(RESETS_RESET, peripherals);
    REG_CLR(RESETS_RESET, peripherals);
    while ((REG32(RESETS_RESET_DONE) & peripherals) != peripherals) {
    }
}

#endif
