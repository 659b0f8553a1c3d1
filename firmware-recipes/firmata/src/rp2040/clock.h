/* The clocks (crystal, PLL, system, peripheral and ADC clocks), the shared clock.h's milliseconds,
 * and a wake-up alarm. */
#ifndef BOARDFLEET_RP2040_CLOCK_H
#define BOARDFLEET_RP2040_CLOCK_H

#include <stdint.h>

#include "../clock.h"

/* clk_sys and clk_peri after clock_init: 12 MHz crystal * 125 / (6 * 2). */
#define CLOCK_SYS_HZ 125000000u
#define CLOCK_PERI_HZ CLOCK_SYS_HZ

/* Starts a PLL (PLL_SYS_BASE, PLL_USB_BASE) the caller took out of reset, from the 12 MHz crystal:
 * f_out = 12 MHz / refdiv * fbdiv / (postdiv1 * postdiv2). Returns once it runs at that rate. */
void pll_start(uint32_t pll, uint32_t refdiv, uint32_t fbdiv, uint32_t postdiv1, uint32_t postdiv2);
/* Raises the timer interrupt when clock_millis() reaches `millis`, to wake the core from WFI. */
void clock_wake_at(uint32_t millis);
/* The timer's interrupt handler (vector table). */
void clock_timer_irq(void);

#endif
