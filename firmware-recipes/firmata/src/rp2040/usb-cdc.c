/*
 * The RP2040 USB controller in device mode, from the datasheet's USB chapter: endpoint 0 answers
 * the host's control transfers (enumeration, then the CDC class requests), endpoint 2 carries
 * the serial data in 64-byte bulk packets. Each endpoint has one buffer in the controller's
 * DPRAM, described by a buffer control word; handing a buffer to the controller sets AVAILABLE,
 * and its completion raises BUFF_STATUS. Everything moves in the USBCTRL interrupt.
 */
#include "usb-cdc.h"

#include "clock.h"
#include "resets.h"
#include "usb-clock.h"
#include "usb-descriptors.h"
#include "usb-registers.h"

#define EP0 0u
#define IN 0
#define OUT 1

#define REQUEST_TYPE_MASK 0x60u
#define REQUEST_TYPE_STANDARD 0x00u
#define REQUEST_TYPE_CLASS 0x20u
#define REQUEST_GET_STATUS 0u
#define REQUEST_CLEAR_FEATURE 1u
#define REQUEST_SET_ADDRESS 5u
#define REQUEST_GET_DESCRIPTOR 6u
#define REQUEST_GET_CONFIGURATION 8u
#define REQUEST_SET_CONFIGURATION 9u
#define REQUEST_SET_INTERFACE 11u
#define CDC_SET_LINE_CODING 0x20u
#define CDC_GET_LINE_CODING 0x21u
#define CDC_SET_CONTROL_LINE_STATE 0x22u
#define CDC_SEND_BREAK 0x23u
#define CDC_LINE_STATE_DTR (1u << 0)
#define CDC_LINE_CODING_LENGTH 7u

#define ENDPOINT_TYPE_BULK 2u
#define ENDPOINT_TYPE_INTERRUPT 3u
/* Buffers are 64-byte aligned offsets into DPRAM, after the control words and EP0's buffer. */
#define NOTIFY_BUFFER_OFFSET USB_DPRAM_FIRST_FREE_OFFSET
#define DATA_IN_BUFFER_OFFSET (NOTIFY_BUFFER_OFFSET + 64u)
#define DATA_OUT_BUFFER_OFFSET (DATA_IN_BUFFER_OFFSET + 64u)

struct setup_packet {
    uint8_t request_type;
    uint8_t request;
    uint16_t value;
    uint16_t index;
    uint16_t length;
};

/* Where endpoint 0 is in a control transfer (USB 2.0 section 8.5.3). */
enum ep0_stage { EP0_IDLE, EP0_DATA_IN, EP0_DATA_OUT, EP0_STATUS_IN };

static struct {
    enum ep0_stage stage;
    uint8_t next_data1; /* the PID of EP0's next IN packet: a data phase starts with DATA1 */
    const uint8_t *in_data;
    uint16_t in_remaining;
    uint8_t in_needs_zero_length_packet; /* a reply shorter than asked ends on a full packet */
    uint8_t pending_address;             /* SET_ADDRESS takes effect after its status stage */
} ep0;

/* A power of two of 256, so the uint8_t indices wrap by themselves; one slot stays empty. */
#define RING_SIZE 256u
struct ring {
    volatile uint8_t bytes[RING_SIZE];
    volatile uint8_t head;
    volatile uint8_t tail;
};
static struct ring rx, tx;
static volatile uint8_t configuration;
static volatile uint8_t line_state;
static volatile uint8_t rx_armed, tx_busy;
static uint8_t rx_next_data1, tx_next_data1;
/* 115200 8N1 until the host says otherwise; only echoed back, a USB port has no baud rate. */
static uint8_t line_coding[CDC_LINE_CODING_LENGTH] = {0x00, 0xC2, 0x01, 0x00, 0, 0, 8};

static uint8_t ring_count(const struct ring *ring) {
    return (uint8_t)(ring->head - ring->tail);
}

static uint32_t interrupts_off(void) {
    uint32_t primask;
    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    return primask;
}

static void interrupts_restore(uint32_t primask) {
    __asm__ volatile("msr primask, %0" ::"r"(primask) : "memory");
}

/* DPRAM is written and read a 32-bit word at a time, the access the datasheet describes. */
static void dpram_write(uint32_t offset, const uint8_t *bytes, uint16_t length) {
    for (uint16_t at = 0; at < length; at += 4u) {
        uint32_t word = 0;
        for (uint16_t byte = 0; byte < 4u && at + byte < length; byte++)
            word |= (uint32_t)bytes[at + byte] << (8u * byte);
        REG32(USB_DPRAM_BASE + offset + at) = word;
    }
}

static uint8_t dpram_byte(uint32_t offset) {
    return (uint8_t)(REG32(USB_DPRAM_BASE + (offset & ~3u)) >> (8u * (offset & 3u)));
}

/* Hands a buffer to the controller. AVAILABLE goes in a second write, a few clk_sys cycles later,
 * because clk_sys runs faster than clk_usb (datasheet: "Buffer Control", concurrent access). */
static void buffer_start(uint32_t endpoint, int out, uint16_t length, uint8_t data1) {
    const uint32_t control_address = USB_DPRAM_BUF_CTRL(endpoint, out);
    const uint32_t control = length | (data1 ? USB_BUF_CTRL_DATA1 : 0u) | (out ? 0u : USB_BUF_CTRL_FULL);
    REG32(control_address) = control;
    __asm__ volatile("nop\n\tnop\n\tnop" ::: "memory");
    REG32(control_address) = control | USB_BUF_CTRL_AVAILABLE;
}

static void ep0_send_packet(void) {
    const uint16_t length = ep0.in_remaining < USB_EP0_MAX_PACKET ? ep0.in_remaining : USB_EP0_MAX_PACKET;
    if (length < USB_EP0_MAX_PACKET) ep0.in_needs_zero_length_packet = 0;
    dpram_write(USB_DPRAM_EP0_BUFFER_OFFSET, ep0.in_data, length);
    ep0.in_data += length;
    ep0.in_remaining = (uint16_t)(ep0.in_remaining - length);
    buffer_start(EP0, IN, length, ep0.next_data1);
    ep0.next_data1 ^= 1u;
}

static void ep0_reply(const uint8_t *data, uint16_t length, uint16_t requested) {
    if (length > requested) length = requested;
    ep0.stage = EP0_DATA_IN;
    ep0.in_data = data;
    ep0.in_remaining = length;
    ep0.in_needs_zero_length_packet = length < requested && length % USB_EP0_MAX_PACKET == 0;
    ep0_send_packet();
}

static void ep0_acknowledge(void) {
    ep0.stage = EP0_STATUS_IN;
    buffer_start(EP0, IN, 0, 1);
}

static void ep0_stall(void) {
    ep0.stage = EP0_IDLE;
    /* EP0 stalls only while EP_STALL_ARM is set too, and the controller clears that at the next
     * SETUP: a refused request cannot outlive itself. No AVAILABLE: there is no buffer to send. */
    REG32(USB_EP_STALL_ARM) = USB_EP_STALL_ARM_EP0_IN | USB_EP_STALL_ARM_EP0_OUT;
    REG32(USB_DPRAM_BUF_CTRL(EP0, IN)) = USB_BUF_CTRL_STALL;
    REG32(USB_DPRAM_BUF_CTRL(EP0, OUT)) = USB_BUF_CTRL_STALL;
}

static void rx_arm(void) {
    /* Taking a packet only when it fits: otherwise the controller NAKs and the host waits. */
    if (rx_armed || !configuration || RING_SIZE - 1u - ring_count(&rx) < USB_CDC_DATA_MAX_PACKET) return;
    rx_armed = 1;
    buffer_start(USB_CDC_DATA_ENDPOINT, OUT, USB_CDC_DATA_MAX_PACKET, rx_next_data1);
    rx_next_data1 ^= 1u;
}

static void tx_start(void) {
    uint8_t packet[USB_CDC_DATA_MAX_PACKET];
    uint16_t length = 0;
    if (!configuration) return;
    while (length < sizeof packet && tx.tail != tx.head) packet[length++] = tx.bytes[tx.tail++];
    if (length == 0) return;
    tx_busy = 1;
    dpram_write(DATA_IN_BUFFER_OFFSET, packet, length);
    buffer_start(USB_CDC_DATA_ENDPOINT, IN, length, tx_next_data1);
    tx_next_data1 ^= 1u;
}

static void configure_endpoints(void) {
    const uint32_t enabled = USB_EP_CTRL_ENABLE | USB_EP_CTRL_INTERRUPT_PER_BUFF;
    REG32(USB_DPRAM_EP_CTRL(USB_CDC_NOTIFY_ENDPOINT, IN)) =
        enabled | (ENDPOINT_TYPE_INTERRUPT << USB_EP_CTRL_TYPE_LSB) | NOTIFY_BUFFER_OFFSET;
    REG32(USB_DPRAM_EP_CTRL(USB_CDC_DATA_ENDPOINT, IN)) =
        enabled | (ENDPOINT_TYPE_BULK << USB_EP_CTRL_TYPE_LSB) | DATA_IN_BUFFER_OFFSET;
    REG32(USB_DPRAM_EP_CTRL(USB_CDC_DATA_ENDPOINT, OUT)) =
        enabled | (ENDPOINT_TYPE_BULK << USB_EP_CTRL_TYPE_LSB) | DATA_OUT_BUFFER_OFFSET;
    rx_next_data1 = tx_next_data1 = 0;
    rx_armed = tx_busy = 0;
    rx_arm();
    tx_start();
}

/* Unconfigured (bus reset, SET_CONFIGURATION 0): only endpoint 0 may answer. */
static void disable_endpoints(void) {
    REG32(USB_DPRAM_EP_CTRL(USB_CDC_NOTIFY_ENDPOINT, IN)) = 0;
    REG32(USB_DPRAM_EP_CTRL(USB_CDC_DATA_ENDPOINT, IN)) = 0;
    REG32(USB_DPRAM_EP_CTRL(USB_CDC_DATA_ENDPOINT, OUT)) = 0;
}

static void standard_request(const struct setup_packet *setup) {
    static uint8_t reply[2];
    switch (setup->request) {
    case REQUEST_GET_DESCRIPTOR: {
        const struct usb_descriptor descriptor = usb_descriptor_find(setup->value);
        if (descriptor.length == 0)
            ep0_stall();
        else
            ep0_reply(descriptor.bytes, descriptor.length, setup->length);
        break;
    }
    case REQUEST_SET_ADDRESS:
        ep0.pending_address = (uint8_t)(setup->value & 0x7Fu);
        ep0_acknowledge();
        break;
    case REQUEST_SET_CONFIGURATION:
        if (setup->value > USB_CONFIGURATION_VALUE) {
            ep0_stall();
            break;
        }
        configuration = (uint8_t)setup->value;
        if (configuration)
            configure_endpoints();
        else
            disable_endpoints();
        ep0_acknowledge();
        break;
    case REQUEST_GET_CONFIGURATION:
        reply[0] = configuration;
        ep0_reply(reply, 1, setup->length);
        break;
    case REQUEST_GET_STATUS: /* bus powered, no remote wake-up, no endpoint halted */
        reply[0] = reply[1] = 0;
        ep0_reply(reply, 2, setup->length);
        break;
    case REQUEST_CLEAR_FEATURE: /* endpoint halt is the only feature we have, and we never halt */
        ep0_acknowledge();
        break;
    case REQUEST_SET_INTERFACE:
        if (setup->value == 0)
            ep0_acknowledge();
        else
            ep0_stall();
        break;
    default:
        ep0_stall();
        break;
    }
}

static void class_request(const struct setup_packet *setup) {
    switch (setup->request) {
    case CDC_SET_LINE_CODING:
        ep0.stage = EP0_DATA_OUT;
        buffer_start(EP0, OUT, CDC_LINE_CODING_LENGTH, 1);
        break;
    case CDC_GET_LINE_CODING:
        ep0_reply(line_coding, CDC_LINE_CODING_LENGTH, setup->length);
        break;
    case CDC_SET_CONTROL_LINE_STATE:
        line_state = (uint8_t)setup->value;
        ep0_acknowledge();
        break;
    case CDC_SEND_BREAK:
        ep0_acknowledge();
        break;
    default:
        ep0_stall();
        break;
    }
}

static void handle_setup(void) {
    const uint32_t first = REG32(USB_DPRAM_SETUP_PACKET);
    const uint32_t second = REG32(USB_DPRAM_SETUP_PACKET + 4u);
    const struct setup_packet setup = {
        .request_type = (uint8_t)first,
        .request = (uint8_t)(first >> 8),
        .value = (uint16_t)(first >> 16),
        .index = (uint16_t)second,
        .length = (uint16_t)(second >> 16),
    };
    /* A SETUP ends whatever transfer was under way. */
    ep0.stage = EP0_IDLE;
    ep0.next_data1 = 1;
    switch (setup.request_type & REQUEST_TYPE_MASK) {
    case REQUEST_TYPE_STANDARD:
        standard_request(&setup);
        break;
    case REQUEST_TYPE_CLASS:
        class_request(&setup);
        break;
    default:
        ep0_stall();
        break;
    }
}

static void ep0_in_done(void) {
    if (ep0.stage == EP0_DATA_IN && (ep0.in_remaining > 0 || ep0.in_needs_zero_length_packet)) {
        ep0_send_packet();
        return;
    }
    if (ep0.stage == EP0_DATA_IN) {
        /* The host ends a read with a zero-length OUT packet, always DATA1. */
        buffer_start(EP0, OUT, 0, 1);
    } else if (ep0.stage == EP0_STATUS_IN && ep0.pending_address) {
        REG32(USB_ADDR_ENDP) = ep0.pending_address;
        ep0.pending_address = 0;
    }
    ep0.stage = EP0_IDLE;
}

static void ep0_out_done(void) {
    if (ep0.stage != EP0_DATA_OUT) return; /* the status stage of a read: nothing to do */
    const uint16_t length = (uint16_t)(REG32(USB_DPRAM_BUF_CTRL(EP0, OUT)) & USB_BUF_CTRL_LENGTH_MASK);
    if (length == CDC_LINE_CODING_LENGTH) {
        for (uint16_t at = 0; at < length; at++)
            line_coding[at] = dpram_byte(USB_DPRAM_EP0_BUFFER_OFFSET + at);
    }
    ep0_acknowledge();
}

static void data_out_done(void) {
    const uint16_t length =
        (uint16_t)(REG32(USB_DPRAM_BUF_CTRL(USB_CDC_DATA_ENDPOINT, OUT)) & USB_BUF_CTRL_LENGTH_MASK);
    for (uint16_t at = 0; at < length; at++) rx.bytes[rx.head++] = dpram_byte(DATA_OUT_BUFFER_OFFSET + at);
    rx_armed = 0;
    rx_arm();
}

static void handle_buffers(void) {
    const uint32_t done = REG32(USB_BUFF_STATUS);
    REG32(USB_BUFF_STATUS) = done; /* write to clear */
    if (done & USB_BUFF_BIT(EP0, IN)) ep0_in_done();
    if (done & USB_BUFF_BIT(EP0, OUT)) ep0_out_done();
    if (done & USB_BUFF_BIT(USB_CDC_DATA_ENDPOINT, OUT)) data_out_done();
    if (done & USB_BUFF_BIT(USB_CDC_DATA_ENDPOINT, IN)) {
        tx_busy = 0;
        tx_start();
    }
}

static void handle_bus_reset(void) {
    REG32(USB_ADDR_ENDP) = 0;
    configuration = 0;
    disable_endpoints();
    line_state = 0;
    ep0.stage = EP0_IDLE;
    ep0.pending_address = 0;
    REG32(USB_SIE_STATUS) = USB_SIE_STATUS_BUS_RESET; /* write to clear */
}

void usbctrl_irq(void) {
    /* Buffers before SETUP: a finished buffer belongs to the transfer a new SETUP replaces. */
    for (uint32_t pending; (pending = REG32(USB_INTS)) != 0;) {
        if (pending & USB_INT_BUS_RESET) handle_bus_reset();
        if (pending & USB_INT_BUFF_STATUS) handle_buffers();
        if (pending & USB_INT_SETUP_REQ) {
            REG32(USB_SIE_STATUS) = USB_SIE_STATUS_SETUP_REC; /* write to clear */
            handle_setup();
        }
    }
}

void usb_cdc_init(void) {
    usb_clock_init();
    resets_release(RESET_USBCTRL);
    /* The reset leaves DPRAM as it was (power-up noise, an earlier firmware's endpoints): clear the
     * control words, so no endpoint looks enabled or armed. */
    for (uint32_t offset = 0; offset < USB_DPRAM_FIRST_FREE_OFFSET; offset += 4u)
        REG32(USB_DPRAM_BASE + offset) = 0;
    REG32(USB_USB_MUXING) = USB_USB_MUXING_TO_PHY | USB_USB_MUXING_SOFTCON;
    /* The Pico wires nothing to the controller's VBUS detect; a board powered by USB has VBUS: force it. */
    REG32(USB_USB_PWR) = USB_USB_PWR_VBUS_DETECT | USB_USB_PWR_VBUS_DETECT_OVERRIDE_EN;
    REG32(USB_MAIN_CTRL) = USB_MAIN_CTRL_CONTROLLER_EN;
    REG32(USB_SIE_CTRL) = USB_SIE_CTRL_EP0_INT_1BUF;
    REG32(USB_INTE) = USB_INT_BUFF_STATUS | USB_INT_BUS_RESET | USB_INT_SETUP_REQ;
    REG32(NVIC_ISER) = 1u << IRQ_USBCTRL;
    /* The pull-up on D+ is what tells the host a full-speed device arrived. */
    REG_SET(USB_SIE_CTRL, USB_SIE_CTRL_PULLUP_EN);
}

uint8_t usb_cdc_connected(void) {
    return configuration && (line_state & CDC_LINE_STATE_DTR);
}

uint8_t usb_cdc_available(void) {
    return rx.head != rx.tail;
}

int16_t usb_cdc_read(void) {
    if (rx.head == rx.tail) return -1;
    const uint8_t byte = rx.bytes[rx.tail++];
    const uint32_t primask = interrupts_off();
    rx_arm();
    interrupts_restore(primask);
    return byte;
}

/* A host that keeps the port open but stops reading must not stall the firmware (and UART0 with
 * it): a full queue waits this long for room, then the byte is dropped. */
#define TX_PATIENCE_MS 50u

void usb_cdc_write(uint8_t byte) {
    const uint32_t started = clock_millis();
    while (ring_count(&tx) == RING_SIZE - 1u) {
        if (!usb_cdc_connected() || clock_millis() - started > TX_PATIENCE_MS) return;
    }
    if (!usb_cdc_connected()) return;
    tx.bytes[tx.head++] = byte;
    const uint32_t primask = interrupts_off();
    if (!tx_busy) tx_start();
    interrupts_restore(primask);
}
