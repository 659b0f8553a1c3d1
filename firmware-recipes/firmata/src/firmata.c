#include "firmata.h"

#include "analog-io.h"
#include "pins.h"
#include "progmem.h"
#include "servo.h"
#include "uart.h"

#ifndef FIRMWARE_NAME
#error "FIRMWARE_NAME, FIRMWARE_VERSION_MAJOR and FIRMWARE_VERSION_MINOR come from recipe.yaml"
#endif

#define PROTOCOL_VERSION_MAJOR 2
#define PROTOCOL_VERSION_MINOR 6

/* Message types (the command nibble for the first three groups; the low nibble is a port,
 * pin or channel). */
#define DIGITAL_MESSAGE 0x90
#define REPORT_ANALOG 0xC0
#define REPORT_DIGITAL 0xD0
#define ANALOG_MESSAGE 0xE0
#define START_SYSEX 0xF0
#define SET_PIN_MODE 0xF4
#define SET_DIGITAL_PIN_VALUE 0xF5
#define END_SYSEX 0xF7
#define REPORT_VERSION 0xF9
#define SYSTEM_RESET 0xFF

/* Sysex commands. */
#define ANALOG_MAPPING_QUERY 0x69
#define ANALOG_MAPPING_RESPONSE 0x6A
#define CAPABILITY_QUERY 0x6B
#define CAPABILITY_RESPONSE 0x6C
#define PIN_STATE_QUERY 0x6D
#define PIN_STATE_RESPONSE 0x6E
#define EXTENDED_ANALOG 0x6F
#define SERVO_CONFIG 0x70
#define STRING_DATA 0x71
#define REPORT_FIRMWARE 0x79
#define SAMPLING_INTERVAL 0x7A

/* Pin modes and the resolution (bits) each reports in the capability response. */
#define MODE_INPUT 0x00
#define MODE_OUTPUT 0x01
#define MODE_ANALOG 0x02
#define MODE_PWM 0x03
#define MODE_SERVO 0x04
#define MODE_PULLUP 0x0B
#define MODE_IGNORE 0x7F

#define DEFAULT_SAMPLING_INTERVAL_MS 19
#define SYSEX_MAX_DATA 32

static uint8_t pin_mode[TOTAL_PINS];
/* Last value written: the output level, PWM duty or servo position. */
static uint16_t pin_value[TOTAL_PINS];
static uint8_t port_reported[TOTAL_PORTS];
static uint8_t port_last_sent[TOTAL_PORTS];
static uint16_t analog_reported;
static uint16_t sampling_interval_ms;
static uint32_t last_sample_ms;

static uint8_t pending_command;
static uint8_t pending_expected;
static uint8_t pending_count;
static uint8_t pending_data[2];
static uint8_t in_sysex;
static uint8_t sysex_length;
static uint8_t sysex_overflowed;
static uint8_t sysex_data[SYSEX_MAX_DATA];

static void send_7bit_pair(uint16_t value) {
    uart_write((uint8_t)(value & 0x7F));
    uart_write((uint8_t)((value >> 7) & 0x7F));
}

/* Strings travel as two 7-bit bytes per character. */
static void send_string_P(PGM_P text, uint8_t number) {
    uart_write(START_SYSEX);
    uart_write(STRING_DATA);
    for (char c = (char)pgm_read_byte(text); c != '\0'; c = (char)pgm_read_byte(++text)) {
        send_7bit_pair((uint8_t)c);
    }
    char digits[3];
    uint8_t count = 0;
    do {
        digits[count++] = (char)('0' + number % 10);
        number /= 10;
    } while (number > 0);
    while (count > 0) send_7bit_pair((uint8_t)digits[--count]);
    uart_write(END_SYSEX);
}

static void send_version(void) {
    uart_write(REPORT_VERSION);
    uart_write(PROTOCOL_VERSION_MAJOR);
    uart_write(PROTOCOL_VERSION_MINOR);
}

static void send_firmware(void) {
    static const char name[] PROGMEM = FIRMWARE_NAME;
    uart_write(START_SYSEX);
    uart_write(REPORT_FIRMWARE);
    uart_write(FIRMWARE_VERSION_MAJOR);
    uart_write(FIRMWARE_VERSION_MINOR);
    for (uint8_t i = 0; i < sizeof name - 1; i++) send_7bit_pair(pgm_read_byte(&name[i]));
    uart_write(END_SYSEX);
}

void firmata_announce(void) {
    send_version();
    send_firmware();
}

static void send_capabilities(void) {
    uart_write(START_SYSEX);
    uart_write(CAPABILITY_RESPONSE);
    for (uint8_t pin = 0; pin < TOTAL_PINS; pin++) {
        uint8_t can = pin_capabilities(pin);
        if (can & PIN_CAN_DIGITAL) {
            uart_write(MODE_INPUT);
            uart_write(1);
            uart_write(MODE_PULLUP);
            uart_write(1);
            uart_write(MODE_OUTPUT);
            uart_write(1);
        }
        if (can & PIN_CAN_ANALOG) {
            uart_write(MODE_ANALOG);
            uart_write(ADC_RESOLUTION_BITS);
        }
        if (can & PIN_CAN_PWM) {
            uart_write(MODE_PWM);
            uart_write(PWM_RESOLUTION_BITS);
        }
        if (can & PIN_CAN_SERVO) {
            uart_write(MODE_SERVO);
            uart_write(14);
        }
        uart_write(0x7F);
    }
    uart_write(END_SYSEX);
}

static void send_analog_mapping(void) {
    uart_write(START_SYSEX);
    uart_write(ANALOG_MAPPING_RESPONSE);
    for (uint8_t pin = 0; pin < TOTAL_PINS; pin++) uart_write(pin_analog_channel(pin));
    uart_write(END_SYSEX);
}

static uint16_t pin_state(uint8_t pin) {
    switch (pin_mode[pin]) {
        /* The level read back from the port, so a shorted or overloaded output shows. */
        case MODE_OUTPUT: return pin_read(pin);
        case MODE_PULLUP: return 1;
        case MODE_PWM:
        case MODE_SERVO: return pin_value[pin];
        default: return 0;
    }
}

static void send_pin_state(uint8_t pin) {
    if (pin >= TOTAL_PINS) {
        send_string_P(PSTR("pin state query: no such pin "), pin);
        return;
    }
    uart_write(START_SYSEX);
    uart_write(PIN_STATE_RESPONSE);
    uart_write(pin);
    uart_write(pin_mode[pin]);
    uint16_t state = pin_state(pin);
    do {
        uart_write((uint8_t)(state & 0x7F));
        state >>= 7;
    } while (state > 0);
    uart_write(END_SYSEX);
}

static uint8_t read_port_inputs(uint8_t port) {
    uint8_t value = 0;
    for (uint8_t bit = 0; bit < 8; bit++) {
        uint8_t pin = (uint8_t)(port * 8 + bit);
        if (pin >= TOTAL_PINS) break;
        if ((pin_mode[pin] == MODE_INPUT || pin_mode[pin] == MODE_PULLUP) && pin_read(pin)) {
            value |= (uint8_t)(1 << bit);
        }
    }
    return value;
}

static void send_port(uint8_t port, uint8_t value) {
    uart_write((uint8_t)(DIGITAL_MESSAGE | port));
    send_7bit_pair(value);
    port_last_sent[port] = value;
}

static void send_analog(uint8_t channel) {
    uart_write((uint8_t)(ANALOG_MESSAGE | channel));
    send_7bit_pair(adc_read(channel));
}

static uint8_t mode_supported(uint8_t pin, uint8_t mode) {
    uint8_t can = pin_capabilities(pin);
    switch (mode) {
        case MODE_INPUT:
        case MODE_OUTPUT:
        case MODE_PULLUP: return can & PIN_CAN_DIGITAL;
        case MODE_ANALOG: return can & PIN_CAN_ANALOG;
        case MODE_PWM: return can & PIN_CAN_PWM;
        case MODE_SERVO: return can & PIN_CAN_SERVO;
        default: return 0;
    }
}

static void set_analog_reporting(uint8_t channel, uint8_t enabled) {
    if (channel >= TOTAL_ANALOG_PINS) return;
    if (enabled) {
        analog_reported |= (uint16_t)(1u << channel);
        /* An immediate sample, so the host need not wait a whole interval for the first. */
        send_analog(channel);
    } else {
        analog_reported &= (uint16_t)~(1u << channel);
    }
}

static void leave_mode(uint8_t pin) {
    if (pin_mode[pin] == MODE_SERVO) servo_detach(pin);
    if (pin_mode[pin] == MODE_PWM) pwm_stop(pin);
}

/* The electrical side of a mode change; the caller has checked the pin supports it. */
static void apply_pin_mode(uint8_t pin, uint8_t mode) {
    if (pin_mode[pin] != mode) leave_mode(pin);
    pin_value[pin] = 0;
    switch (mode) {
        case MODE_INPUT:
        case MODE_ANALOG:
            pin_set_output(pin, 0);
            pin_set_pullup(pin, 0);
            break;
        case MODE_PULLUP:
            pin_set_output(pin, 0);
            pin_set_pullup(pin, 1);
            break;
        case MODE_OUTPUT:
        case MODE_SERVO:
            pin_write(pin, 0);
            pin_set_output(pin, 1);
            break;
        case MODE_PWM:
            pin_write(pin, 0);
            pin_set_output(pin, 1);
            pwm_write(pin, 0);
            break;
        default: break;
    }
    pin_mode[pin] = mode;
}

static void set_pin_mode(uint8_t pin, uint8_t mode, uint16_t servo_min_us, uint16_t servo_max_us) {
    if (pin >= TOTAL_PINS) {
        send_string_P(PSTR("set pin mode: no such pin "), pin);
        return;
    }
    if (mode == MODE_IGNORE) {
        pin_mode[pin] = MODE_IGNORE;
        return;
    }
    if (!mode_supported(pin, mode)) {
        send_string_P(PSTR("set pin mode: mode not supported on pin "), pin);
        return;
    }
    if (mode == MODE_SERVO && !servo_attach(pin, servo_min_us, servo_max_us)) {
        send_string_P(PSTR("set pin mode: all servo slots in use, pin "), pin);
        return;
    }
    apply_pin_mode(pin, mode);
    /* Selecting ANALOG starts reporting that channel, as Firmata hosts expect. */
    uint8_t channel = pin_analog_channel(pin);
    if (channel != NO_ANALOG_CHANNEL) set_analog_reporting(channel, mode == MODE_ANALOG);
}

static void write_digital_pin(uint8_t pin, uint8_t high) {
    if (pin >= TOTAL_PINS || pin_mode[pin] != MODE_OUTPUT) return;
    pin_write(pin, high);
    pin_value[pin] = high;
}

static void write_analog_pin(uint8_t pin, uint16_t value) {
    if (pin >= TOTAL_PINS) return;
    if (pin_mode[pin] == MODE_PWM) {
        pwm_write(pin, value > 255 ? 255 : (uint8_t)value);
        pin_value[pin] = value;
    } else if (pin_mode[pin] == MODE_SERVO) {
        servo_write(pin, value);
        pin_value[pin] = value;
    }
}

static uint16_t decode_7bit_pair(const uint8_t *bytes) {
    return (uint16_t)(bytes[0] | ((uint16_t)bytes[1] << 7));
}

static void handle_sysex(void) {
    if (sysex_length == 0) return;
    const uint8_t *args = &sysex_data[1];
    uint8_t arg_count = (uint8_t)(sysex_length - 1);
    switch (sysex_data[0]) {
        case REPORT_FIRMWARE: send_firmware(); break;
        case CAPABILITY_QUERY: send_capabilities(); break;
        case ANALOG_MAPPING_QUERY: send_analog_mapping(); break;
        case PIN_STATE_QUERY:
            if (arg_count >= 1) send_pin_state(args[0]);
            break;
        case SAMPLING_INTERVAL:
            if (arg_count >= 2) {
                uint16_t interval = decode_7bit_pair(args);
                sampling_interval_ms = interval < 1 ? 1 : interval;
            }
            break;
        case SERVO_CONFIG:
            if (arg_count >= 5) {
                uint16_t min_us = decode_7bit_pair(&args[1]);
                uint16_t max_us = decode_7bit_pair(&args[3]);
                if (min_us >= max_us) {
                    send_string_P(PSTR("servo config: minimum pulse not below maximum, pin "), args[0]);
                    break;
                }
                set_pin_mode(args[0], MODE_SERVO, min_us, max_us);
            }
            break;
        case EXTENDED_ANALOG:
            if (arg_count >= 2) {
                uint32_t value = 0;
                for (uint8_t i = 1; i < arg_count && i <= 3; i++) value |= (uint32_t)args[i] << (7 * (i - 1));
                write_analog_pin(args[0], value > 0xFFFF ? 0xFFFF : (uint16_t)value);
            }
            break;
        case STRING_DATA:
            /* Host-to-board text has no meaning for this firmware. */
            break;
        default: send_string_P(PSTR("unsupported sysex command "), sysex_data[0]); break;
    }
}

static void handle_message(void) {
    uint8_t low = pending_command & 0x0F;
    switch (pending_command < START_SYSEX ? pending_command & 0xF0 : pending_command) {
        case DIGITAL_MESSAGE: {
            uint8_t value = (uint8_t)decode_7bit_pair(pending_data);
            for (uint8_t bit = 0; bit < 8; bit++) write_digital_pin((uint8_t)(low * 8 + bit), (value >> bit) & 1);
            break;
        }
        case ANALOG_MESSAGE: write_analog_pin(low, decode_7bit_pair(pending_data)); break;
        case REPORT_ANALOG: set_analog_reporting(low, pending_data[0]); break;
        case REPORT_DIGITAL:
            if (low < TOTAL_PORTS) {
                port_reported[low] = pending_data[0] ? 1 : 0;
                /* Report the current state at once: the host has no other way to learn it. */
                if (port_reported[low]) send_port(low, read_port_inputs(low));
            }
            break;
        case SET_PIN_MODE:
            set_pin_mode(pending_data[0], pending_data[1], SERVO_DEFAULT_MIN_US, SERVO_DEFAULT_MAX_US);
            break;
        case SET_DIGITAL_PIN_VALUE: write_digital_pin(pending_data[0], pending_data[1]); break;
        default: break;
    }
}

static uint8_t data_bytes_for(uint8_t command) {
    switch (command < START_SYSEX ? command & 0xF0 : command) {
        case DIGITAL_MESSAGE:
        case ANALOG_MESSAGE:
        case SET_PIN_MODE:
        case SET_DIGITAL_PIN_VALUE: return 2;
        case REPORT_ANALOG:
        case REPORT_DIGITAL: return 1;
        default: return 0;
    }
}

void firmata_receive(uint8_t byte) {
    if (in_sysex) {
        if (byte == END_SYSEX) {
            in_sysex = 0;
            if (!sysex_overflowed) handle_sysex();
            return;
        }
        if (byte < 0x80) {
            if (sysex_length < SYSEX_MAX_DATA) {
                sysex_data[sysex_length++] = byte;
            } else {
                sysex_overflowed = 1;
            }
            return;
        }
        /* A command byte inside a sysex means the end was lost: start over with it. */
        in_sysex = 0;
    }
    if (byte >= 0x80) {
        pending_command = 0;
        switch (byte) {
            case START_SYSEX:
                in_sysex = 1;
                sysex_length = 0;
                sysex_overflowed = 0;
                return;
            case REPORT_VERSION: send_version(); return;
            case SYSTEM_RESET: firmata_reset(); return;
            default: break;
        }
        pending_expected = data_bytes_for(byte);
        if (pending_expected > 0) {
            pending_command = byte;
            pending_count = 0;
        }
        return;
    }
    if (pending_command == 0) return;
    pending_data[pending_count++] = byte;
    if (pending_count == pending_expected) {
        handle_message();
        pending_command = 0;
    }
}

void firmata_reset(void) {
    pending_command = 0;
    in_sysex = 0;
    analog_reported = 0;
    sampling_interval_ms = DEFAULT_SAMPLING_INTERVAL_MS;
    servo_detach_all();
    for (uint8_t port = 0; port < TOTAL_PORTS; port++) {
        port_reported[port] = 0;
        port_last_sent[port] = 0;
    }
    /* Inputs, not outputs: whatever is wired to a pin, high impedance harms nothing. */
    for (uint8_t pin = 0; pin < TOTAL_PINS; pin++) {
        uint8_t can = pin_capabilities(pin);
        if (can & PIN_CAN_ANALOG) {
            apply_pin_mode(pin, MODE_ANALOG);
        } else if (can & PIN_CAN_DIGITAL) {
            apply_pin_mode(pin, MODE_INPUT);
        } else {
            pin_mode[pin] = MODE_IGNORE;
        }
    }
}

void firmata_report_digital_changes(void) {
    for (uint8_t port = 0; port < TOTAL_PORTS; port++) {
        if (!port_reported[port]) continue;
        uint8_t value = read_port_inputs(port);
        if (value != port_last_sent[port]) send_port(port, value);
    }
}

void firmata_report_analog_if_due(uint32_t now_ms) {
    if (now_ms - last_sample_ms < sampling_interval_ms) return;
    last_sample_ms = now_ms;
    for (uint8_t channel = 0; channel < TOTAL_ANALOG_PINS; channel++) {
        if (analog_reported & (1u << channel)) send_analog(channel);
    }
}
