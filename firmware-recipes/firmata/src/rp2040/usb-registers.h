/*
 * The RP2040 registers the USB device driver touches, from the datasheet's USB chapter ("List of
 * Registers", "DPRAM layout") and the clock chapter's PLL_USB and clk_usb. Kept apart from
 * rp2040-registers.h so that the USB files stay one unit.
 */
#ifndef BOARDFLEET_USB_REGISTERS_H
#define BOARDFLEET_USB_REGISTERS_H

#include "rp2040-registers.h"

#define RESET_PLL_USB (1u << 13)
#define RESET_USBCTRL (1u << 24)

/* PLL_USB: the same register layout as PLL_SYS (PLL_CS, PLL_PWR... from its base). */
#define PLL_USB_BASE 0x4002C000u

#define CLK_USB_CTRL (CLOCKS_BASE + 0x54u)
#define CLK_USB_DIV (CLOCKS_BASE + 0x58u)
#define CLK_USB_CTRL_ENABLE (1u << 11)
#define CLK_USB_CTRL_AUXSRC_PLL_USB (0u << 5)
#define CLK_USB_DIV_INT_LSB 8

/* USBCTRL_REGS: the controller. */
#define USBCTRL_REGS_BASE 0x50110000u
#define USB_ADDR_ENDP (USBCTRL_REGS_BASE + 0x00u)
#define USB_MAIN_CTRL (USBCTRL_REGS_BASE + 0x40u)
#define USB_SIE_CTRL (USBCTRL_REGS_BASE + 0x4Cu)
#define USB_SIE_STATUS (USBCTRL_REGS_BASE + 0x50u)
#define USB_BUFF_STATUS (USBCTRL_REGS_BASE + 0x58u)
#define USB_EP_STALL_ARM (USBCTRL_REGS_BASE + 0x68u)
#define USB_USB_MUXING (USBCTRL_REGS_BASE + 0x74u)
#define USB_USB_PWR (USBCTRL_REGS_BASE + 0x78u)
#define USB_INTE (USBCTRL_REGS_BASE + 0x90u)
#define USB_INTS (USBCTRL_REGS_BASE + 0x98u)
#define USB_MAIN_CTRL_CONTROLLER_EN (1u << 0)
#define USB_SIE_CTRL_EP0_INT_1BUF (1u << 29)
#define USB_SIE_CTRL_PULLUP_EN (1u << 16)
#define USB_SIE_STATUS_SETUP_REC (1u << 17)
#define USB_SIE_STATUS_BUS_RESET (1u << 19)
#define USB_EP_STALL_ARM_EP0_IN (1u << 0)
#define USB_EP_STALL_ARM_EP0_OUT (1u << 1)
#define USB_USB_MUXING_TO_PHY (1u << 0)
#define USB_USB_MUXING_SOFTCON (1u << 3)
#define USB_USB_PWR_VBUS_DETECT (1u << 2)
#define USB_USB_PWR_VBUS_DETECT_OVERRIDE_EN (1u << 3)
#define USB_INT_BUFF_STATUS (1u << 4)
#define USB_INT_BUS_RESET (1u << 12)
#define USB_INT_SETUP_REQ (1u << 16)
/* BUFF_STATUS and friends: bit 2n is EPn IN, bit 2n+1 is EPn OUT. */
#define USB_BUFF_BIT(endpoint, out) (1u << (2u * (endpoint) + ((out) ? 1u : 0u)))

/* USB DPRAM (device mode): the SETUP packet, endpoint and buffer control words, then buffers. */
#define USB_DPRAM_BASE 0x50100000u
#define USB_DPRAM_SETUP_PACKET (USB_DPRAM_BASE + 0x000u)
/* EP1..15 only: EP0 has no control word, its single buffer is fixed at 0x100. */
#define USB_DPRAM_EP_CTRL(endpoint, out) (USB_DPRAM_BASE + 8u * (endpoint) + ((out) ? 4u : 0u))
#define USB_DPRAM_BUF_CTRL(endpoint, out) (USB_DPRAM_BASE + 0x80u + 8u * (endpoint) + ((out) ? 4u : 0u))
#define USB_DPRAM_EP0_BUFFER_OFFSET 0x100u
#define USB_DPRAM_FIRST_FREE_OFFSET 0x180u
#define USB_EP_CTRL_ENABLE (1u << 31)
#define USB_EP_CTRL_INTERRUPT_PER_BUFF (1u << 29)
#define USB_EP_CTRL_TYPE_LSB 26
#define USB_BUF_CTRL_FULL (1u << 15)
#define USB_BUF_CTRL_LAST (1u << 14)
#define USB_BUF_CTRL_DATA1 (1u << 13)
#define USB_BUF_CTRL_STALL (1u << 11)
#define USB_BUF_CTRL_AVAILABLE (1u << 10)
#define USB_BUF_CTRL_LENGTH_MASK 0x3FFu

#endif
