/*
 * PLL_USB and clk_usb, with the datasheet's values for 48 MHz from the 12 MHz crystal:
 * REFDIV 1, FBDIV 100 (VCO 1200 MHz), POSTDIV1 5, POSTDIV2 5. clk_usb then takes PLL_USB undivided.
 */
#include "usb-clock.h"

#include "clock.h"
#include "resets.h"
#include "usb-registers.h"

#define PLL_USB_REFDIV 1u
#define PLL_USB_FBDIV 100u
#define PLL_USB_POSTDIV1 5u
#define PLL_USB_POSTDIV2 5u

void usb_clock_init(void) {
    resets_release(RESET_PLL_USB);
    pll_start(PLL_USB_BASE, PLL_USB_REFDIV, PLL_USB_FBDIV, PLL_USB_POSTDIV1, PLL_USB_POSTDIV2);

    /* clk_usb has no glitchless mux: stop it, choose the source and divider, then start it. */
    REG_CLR(CLK_USB_CTRL, CLK_USB_CTRL_ENABLE);
    REG32(CLK_USB_DIV) = 1u << CLK_USB_DIV_INT_LSB;
    REG32(CLK_USB_CTRL) = CLK_USB_CTRL_AUXSRC_PLL_USB;
    REG_SET(CLK_USB_CTRL, CLK_USB_CTRL_ENABLE);
}
