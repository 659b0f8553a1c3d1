/*
 * Clocks, in the order the datasheet's clock chapter asks: start the crystal, move clk_sys onto
 * clk_ref (a glitchless switch) and clk_ref onto the crystal, bring up PLL_SYS, then move clk_sys
 * onto the PLL. clk_peri (the UART's clock) follows clk_sys, clk_adc takes a third of PLL_SYS;
 * the timer counts microseconds from the watchdog's tick, made from the 12 MHz clk_ref.
 */
#include "clock.h"

#include "resets.h"
#include "rp2040-registers.h"

#define CRYSTAL_HZ 12000000u
/* 12 MHz / REFDIV 1 * 125 = VCO 1500 MHz; / 6 / 2 = 125 MHz. */
#define PLL_SYS_REFDIV 1u
#define PLL_SYS_FBDIV 125u
#define PLL_SYS_POSTDIV1 6u
#define PLL_SYS_POSTDIV2 2u
#define ADC_CLOCK_DIVIDER 3u

static void start_crystal(void) {
    REG32(XOSC_CTRL) = XOSC_CTRL_FREQ_RANGE_1_15MHZ;
    /* The start-up delay counts 256 crystal cycles at a time: wait about 1 ms. */
    REG32(XOSC_STARTUP) = (CRYSTAL_HZ / 1000u + 255u) / 256u;
    REG32(XOSC_CTRL) = XOSC_CTRL_ENABLE | XOSC_CTRL_FREQ_RANGE_1_15MHZ;
    while (!(REG32(XOSC_STATUS) & XOSC_STATUS_STABLE)) {
    }
}

void pll_start(uint32_t pll, uint32_t refdiv, uint32_t fbdiv, uint32_t postdiv1, uint32_t postdiv2) {
    REG32(pll + PLL_CS) = refdiv;
    REG32(pll + PLL_FBDIV_INT) = fbdiv;
    REG_CLR(pll + PLL_PWR, PLL_PWR_PD | PLL_PWR_VCOPD);
    while (!(REG32(pll + PLL_CS) & PLL_CS_LOCK)) {
    }
    /* The post dividers only once the VCO has locked. */
    REG32(pll + PLL_PRIM) = (postdiv1 << PLL_PRIM_POSTDIV1_LSB) | (postdiv2 << PLL_PRIM_POSTDIV2_LSB);
    REG_CLR(pll + PLL_PWR, PLL_PWR_POSTDIVPD);
}

void clock_init(void) {
    start_crystal();

    REG_CLR(CLK_SYS_CTRL, CLK_SYS_CTRL_SRC_AUX);
    while (REG32(CLK_SYS_SELECTED) != 1u << 0) {
    }
    REG32(CLK_REF_CTRL) = CLK_REF_CTRL_SRC_XOSC;
    while (REG32(CLK_REF_SELECTED) != 1u << CLK_REF_CTRL_SRC_XOSC) {
    }

    resets_release(RESET_PLL_SYS);
    pll_start(PLL_SYS_BASE, PLL_SYS_REFDIV, PLL_SYS_FBDIV, PLL_SYS_POSTDIV1, PLL_SYS_POSTDIV2);
    /* The auxiliary source may change only while the glitchless mux is off it. */
    REG32(CLK_SYS_CTRL) = CLK_SYS_CTRL_AUXSRC_PLL_SYS;
    REG_SET(CLK_SYS_CTRL, CLK_SYS_CTRL_SRC_AUX);
    while (REG32(CLK_SYS_SELECTED) != 1u << 1) {
    }

    REG32(CLK_PERI_CTRL) = CLK_PERI_CTRL_ENABLE | CLK_PERI_CTRL_AUXSRC_CLK_SYS;
    /* The ADC runs at up to 48 MHz: 125 / 3 = 41.7 MHz, so it needs no PLL_USB. clk_adc has no
     * glitchless mux, so its source is chosen while it is still off, then it is enabled. */
    REG32(CLK_ADC_DIV) = ADC_CLOCK_DIVIDER << CLK_ADC_DIV_INT_LSB;
    REG32(CLK_ADC_CTRL) = CLK_ADC_CTRL_AUXSRC_PLL_SYS;
    REG_SET(CLK_ADC_CTRL, CLK_ADC_CTRL_ENABLE);

    REG32(WATCHDOG_TICK) = WATCHDOG_TICK_ENABLE | (CRYSTAL_HZ / 1000000u);
    resets_release(RESET_TIMER);
    REG32(TIMER_INTE) = TIMER_ALARM_0;
    REG32(NVIC_ISER) = 1u << IRQ_TIMER_0;
}

void clock_wake_at(uint32_t millis) {
    /* The alarm compares the low 32 bits of the microsecond count, which wrap with millis * 1000. */
    REG32(TIMER_ALARM0) = millis * 1000u;
}

void clock_timer_irq(void) {
    REG32(TIMER_INTR) = TIMER_ALARM_0;
}

uint32_t clock_millis(void) {
    /* The raw registers latch nothing: read the high half again and retry if it moved. */
    uint32_t high, low;
    do {
        high = REG32(TIMER_TIMERAWH);
        low = REG32(TIMER_TIMERAWL);
    } while (high != REG32(TIMER_TIMERAWH));
    /* (high * 2^32 + low) / 1000 with 2^32 = 4294967 * 1000 + 296: one 32-bit division instead
     * of a 64-bit one, which the M0+ does bit by bit in hundreds of cycles, every time it wakes.
     * high * 296 + low stays within 32 bits for the first 14 million wraps (over 1900 years). */
    return high * 4294967u + (high * 296u + low) / 1000u;
}
