/* The vector table and what runs before main: copy initialised data to SRAM, clear the rest. */
#include <stdint.h>

#include "clock.h"
#include "rp2040-registers.h"
#include "uart.h"
#include "usb-cdc.h"

extern uint32_t __stack_top, __data_start, __data_end, __data_load, __bss_start, __bss_end;

int main(void);

void reset_handler(void);

/* A fault or an interrupt nobody enabled: stop here, where a debugger shows it. */
static void unexpected_exception(void) {
    for (;;) {
    }
}

void reset_handler(void) {
    const uint32_t *from = &__data_load;
    for (uint32_t *to = &__data_start; to < &__data_end;) *to++ = *from++;
    for (uint32_t *to = &__bss_start; to < &__bss_end;) *to++ = 0;
    main();
    for (;;) {
    }
}

#define CORE_VECTORS 16
#define IRQ_VECTORS 32

/* Initial stack pointer, then the Cortex-M0+ exceptions, then the RP2040's 32 interrupts. */
__attribute__((section(".vectors"), used)) static const uintptr_t vectors[CORE_VECTORS + IRQ_VECTORS] = {
    [0] = (uintptr_t)&__stack_top,
    [1] = (uintptr_t)reset_handler,
    [2] = (uintptr_t)unexpected_exception,  /* NMI */
    [3] = (uintptr_t)unexpected_exception,  /* HardFault */
    [11] = (uintptr_t)unexpected_exception, /* SVCall */
    [14] = (uintptr_t)unexpected_exception, /* PendSV */
    [15] = (uintptr_t)unexpected_exception, /* SysTick */
    [CORE_VECTORS + IRQ_TIMER_0] = (uintptr_t)clock_timer_irq,
    [CORE_VECTORS + IRQ_TIMER_0 + 1 ... CORE_VECTORS + IRQ_USBCTRL - 1] = (uintptr_t)unexpected_exception,
    [CORE_VECTORS + IRQ_USBCTRL] = (uintptr_t)usbctrl_irq,
    [CORE_VECTORS + IRQ_USBCTRL + 1 ... CORE_VECTORS + IRQ_UART0 - 1] = (uintptr_t)unexpected_exception,
    [CORE_VECTORS + IRQ_UART0] = (uintptr_t)uart0_irq,
    [CORE_VECTORS + IRQ_UART0 + 1 ... CORE_VECTORS + IRQ_VECTORS - 1] = (uintptr_t)unexpected_exception,
};
