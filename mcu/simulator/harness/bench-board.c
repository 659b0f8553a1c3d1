/*
 * bench-board: one simulated Arduino board. simavr runs the board's real bootloader and
 * whatever was flashed, paced to wall-clock time, with UART0 on a pseudo-terminal.
 *
 *   bench-board --mcu atmega328p --clock 16000000 --boot-address 0x7e00 --bootloader boot.hex
 *               --flash-file flash.bin --state-dir DIR [--app-hex app.hex]
 *
 * DIR gets `tty` (link to the pty slave, opened by hosts like /dev/ttyACM0), `control.sock`
 * and, once both exist, `bench.pid` ("<pid>\n<tty>\n"). Control lines:
 *   reset | get B5 | set D2 0|1 | adc 0 <mV> | corrupt-next-page [address] | status | save | quit
 * Replies start with "ok" or "error" ("reset" answers "ok <simulated ms>"); events pushed to
 * every client: "pin B5 1 <simulated ms>", "reset external|watchdog|power-on", "host open",
 * "host close", "halted <why>", "corrupted 0x<page address>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <simavr/avr_adc.h>
#include <simavr/avr_flash.h>
#include <simavr/avr_ioport.h>
#include <simavr/avr_uart.h>
#include <simavr/sim_avr.h>
#include <simavr/sim_cycle_timers.h>
#include <simavr/sim_hex.h>
#include <simavr/sim_io.h>
#include <simavr/sim_irq.h>
#include <simavr/sim_regbit.h>

#include "pty-port.h"

#define MAX_CLIENTS 16
#define PORTS "ABCDEFGHJKL"
/* megaAVR register addresses shared by the 328P and the 2560 (USART0, MCUSR). */
#define REG_MCUSR 0x54
#define REG_UCSR0A 0xC0
#define REG_UCSR0B 0xC1
#define REG_UBRR0L 0xC4
#define REG_UBRR0H 0xC5
#define BIT_U2X0 1
#define BIT_RXEN0 4
#define MCUSR_PORF 0x01
#define MCUSR_EXTRF 0x02
#define MCUSR_WDRF 0x08

struct client {
	int fd;
	char buf[256];
	size_t len;
};

static const char *mcu_name, *boot_hex, *app_hex, *flash_path, *state_dir;
static uint32_t clock_hz, boot_address;
static avr_t *avr;
static uint8_t *flash_copy;     /* flash captured when simavr terminates the core */
static uint8_t *flash_saved;    /* what the flash file holds */
static uint32_t flash_size;
static int halted;              /* MCU stopped (slept with interrupts off, crashed) until a reset */
static int reset_seen;          /* set by our reset hook: simavr or we reset the core */
static void (*core_reset)(avr_t *);
static int uart_xon = 1;
static struct pty_port port = {.master_fd = -1, .inotify_fd = -1};
static int listen_fd = -1;
static struct client clients[MAX_CLIENTS];
static uint8_t out_buf[8192];
static size_t out_len;
static volatile sig_atomic_t stop_requested;
static char tty_link[4096], sock_path[4096], pid_path[4096];
static uint64_t base_wall_ns, base_cycle;
/* What the outside world applies (a button, a voltage) outlives a reset of the MCU. */
static int8_t driven_pins[8 * (sizeof PORTS - 1)];
static int32_t adc_millivolts[ADC_IRQ_COUNT];
/* A fault for testing read-back verify: the next SPM page write (at one page, or any) stores one
 * flipped byte, as a worn flash cell would. -1: not armed; ANY_PAGE: the next page written. */
#define ANY_PAGE (-2)
static int64_t corrupt_page = -1;
static int (*flash_ioctl)(avr_io_t *, uint32_t, void *);

const char *const program_name = "bench-board";

static void broadcast(const char *fmt, ...) {
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	size_t n = format_line(line, sizeof line, fmt, ap);
	va_end(ap);
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd >= 0 && write(clients[i].fd, line, n) < 0 && errno != EAGAIN) {
			close(clients[i].fd);
			clients[i].fd = -1;
		}
}

static void reply(struct client *c, const char *fmt, ...) {
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	size_t n = format_line(line, sizeof line, fmt, ap);
	va_end(ap);
	if (write(c->fd, line, n) < 0 && errno != EAGAIN) {
		close(c->fd);
		c->fd = -1;
	}
}

/* ---- flash image: the board's whole flash, bootloader included, kept across runs ---- */

static int load_hex(const char *path, uint8_t *flash, uint32_t size) {
	ihex_chunk_p chunks = NULL;
	int count = read_ihex_chunks(path, &chunks);
	if (count <= 0) return -1;
	for (int i = 0; i < count; i++) {
		if (chunks[i].baseaddr + chunks[i].size > size) {
			free_ihex_chunks(chunks);
			return -1;
		}
		memcpy(flash + chunks[i].baseaddr, chunks[i].data, chunks[i].size);
	}
	free_ihex_chunks(chunks);
	return 0;
}

static void save_flash(const uint8_t *flash) {
	if (!flash || memcmp(flash, flash_saved, flash_size) == 0) return;
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", flash_path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) return;
	/* write, fsync, rename: a crash leaves the old image or the new one, never half */
	if (write(fd, flash, flash_size) != (ssize_t)flash_size || fsync(fd) < 0) {
		close(fd);
		unlink(tmp);
		return;
	}
	close(fd);
	if (rename(tmp, flash_path) == 0) memcpy(flash_saved, flash, flash_size);
}

/* ---- the MCU ---- */

static avr_cycle_count_t feed_uart(avr_t *a, avr_cycle_count_t when, void *param);

static const uint8_t *current_flash(void) {
	return halted ? flash_copy : avr->flash;
}

static uint32_t uart_baud(void) {
	uint16_t ubrr = avr->data[REG_UBRR0L] | ((avr->data[REG_UBRR0H] & 0x0f) << 8);
	uint32_t divisor = (avr->data[REG_UCSR0A] & (1 << BIT_U2X0)) ? 8 : 16;
	return clock_hz / (divisor * (ubrr + 1));
}

/* Host and MCU rates more than 5% apart garble every byte, as on a real line. */
static int line_garbled(void) {
	uint32_t host = pty_port_host_baud(&port), mcu = uart_baud();
	return host && mcu && (host > mcu ? host - mcu : mcu - host) * 20 > mcu;
}

/* One byte from the host per 10 bit times at the baud the firmware set: a real line's pace. */
static avr_cycle_count_t feed_uart(avr_t *a, avr_cycle_count_t when, void *param) {
	(void)param;
	uint32_t baud = uart_baud();
	avr_cycle_count_t byte_cycles = (avr_cycle_count_t)clock_hz * 10 / (baud ? baud : 115200);
	if (port.host_open && uart_xon) {
		uint8_t byte;
		if (read(port.master_fd, &byte, 1) == 1 && (a->data[REG_UCSR0B] & (1 << BIT_RXEN0)) && !line_garbled()) {
			avr_raise_irq(avr_io_getirq(a, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT), byte);
		}
		/* a receiver that is off, or at another rate, loses the byte */
	}
	return when + byte_cycles;
}

static void on_uart_output(avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	(void)param;
	if (port.host_open && out_len < sizeof out_buf && !line_garbled()) out_buf[out_len++] = (uint8_t)value;
}

static void on_xon(avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq, (void)value, (void)param;
	uart_xon = 1;
}

static void on_xoff(avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq, (void)value, (void)param;
	uart_xon = 0;
}

/* Milliseconds of simulated time since the core was made (a reset does not restart the count). */
static unsigned long long simulated_ms(void) {
	return (unsigned long long)(avr->cycle * 1000ull / clock_hz);
}

static void on_pin(avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	intptr_t id = (intptr_t)param;
	/* with the board's own time, so a host can time firmware however slowly the machine runs it */
	broadcast("pin %c%d %u %llu", PORTS[id / 8], (int)(id % 8), value & 1, simulated_ms());
}

static void on_core_reset(avr_t *a) {
	core_reset(a);
	reset_seen = 1;
}

/* simavr frees the core when firmware sleeps with interrupts off; keep its flash. */
static void on_terminate(avr_t *a, void *data) {
	(void)data;
	if (a->flash) memcpy(flash_copy, a->flash, flash_size);
}

/* Wraps simavr's SPM handler: after a page write the armed fault flips the page's first byte. */
static int on_spm(avr_io_t *io, uint32_t ctl, void *param) {
	avr_flash_t *flash = (avr_flash_t *)io;
	avr_t *a = io->avr;
	uint32_t z = a->data[R_ZL] | (a->data[R_ZH] << 8) | (a->rampz ? (uint32_t)a->data[a->rampz] << 16 : 0);
	uint32_t page = z & ~(uint32_t)(flash->spm_pagesize - 1);
	int page_write = ctl == AVR_IOCTL_FLASH_SPM && avr_regbit_get(a, flash->selfprgen) && avr_regbit_get(a, flash->pgwrt);
	int result = flash_ioctl(io, ctl, param);
	int armed_here = corrupt_page == ANY_PAGE || (corrupt_page >= 0 && ((uint32_t)corrupt_page & ~(uint32_t)(flash->spm_pagesize - 1)) == page);
	if (page_write && armed_here) {
		corrupt_page = -1;
		a->flash[page] ^= 0xff;
		broadcast("corrupted 0x%x", page);
	}
	return result;
}

static void hook_spm(void) {
	for (avr_io_t *io = avr->io_port; io; io = io->next)
		if (io->kind && !strcmp(io->kind, "flash")) {
			flash_ioctl = io->ioctl;
			io->ioctl = on_spm;
			return;
		}
	die("simavr's %s has no self-programming (flash) module", mcu_name);
}

static void sleep_nothing(avr_t *a, avr_cycle_count_t how_long) {
	(void)a, (void)how_long; /* pacing to the wall clock happens in the main loop */
}

static void rebase_clock(void) {
	base_wall_ns = monotonic_ns();
	base_cycle = avr->cycle;
}

static void arm_feed(void) {
	if (!avr_cycle_timer_status(avr, feed_uart, NULL))
		avr_cycle_timer_register(avr, clock_hz / 10000, feed_uart, NULL);
}

static void make_mcu(const uint8_t *flash) {
	avr = avr_make_mcu_by_name(mcu_name);
	if (!avr) die("simavr does not know the MCU %s", mcu_name);
	avr->custom.deinit = on_terminate;
	avr_init(avr);
	avr->log = 0;
	avr->frequency = clock_hz;
	/* Arduino boards feed AVCC and AREF from 5 V */
	avr->vcc = avr->avcc = avr->aref = 5000;
	avr->sleep = sleep_nothing;
	if (avr->flashend + 1 != flash_size) die("%s has %u bytes of flash, not %u", mcu_name, avr->flashend + 1, flash_size);
	memcpy(avr->flash, flash, flash_size);
	/* BOOTRST: every reset starts the bootloader */
	avr->reset_pc = boot_address;
	core_reset = avr->reset;
	avr->reset = on_core_reset;
	hook_spm();

	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT), on_uart_output, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON), on_xon, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF), on_xoff, NULL);
	/* No stdio echo of firmware output; no usleep on each poll of an empty receiver, which
	 * would slow a bootloader waiting for its host to a crawl (we pace time ourselves). */
	uint32_t flags = 0;
	avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
	flags &= ~(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
	avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
	for (int p = 0; PORTS[p]; p++)
		for (int bit = 0; bit < 8; bit++) {
			avr_irq_t *irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(PORTS[p]), bit);
			if (irq) avr_irq_register_notify(irq, on_pin, (void *)(intptr_t)(p * 8 + bit));
		}
}

/* simavr only passes on a change of an IRQ's value, and a reset cleared the registers it fed. */
static void raise_again(avr_irq_t *irq, uint32_t value) {
	if (!irq) return;
	irq->value = ~value;
	avr_raise_irq(irq, value);
}

static void apply_inputs(void) {
	for (size_t id = 0; id < sizeof driven_pins; id++)
		if (driven_pins[id] >= 0)
			raise_again(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(PORTS[id / 8]), id % 8), driven_pins[id]);
	for (int channel = 0; channel < ADC_IRQ_COUNT; channel++)
		if (adc_millivolts[channel] >= 0)
			raise_again(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + channel), adc_millivolts[channel]);
}

static void reset_mcu(uint8_t cause, const char *name) {
	if (halted) {
		/* the old core was freed: a fresh one, with the flash it had */
		make_mcu(flash_copy);
		halted = 0;
	}
	avr_reset(avr);
	avr->pc = boot_address;
	avr->data[REG_MCUSR] = cause;
	reset_seen = 0;
	uart_xon = 1;
	arm_feed();
	apply_inputs();
	rebase_clock();
	broadcast("reset %s", name);
}

/* ---- pty: the board's USB-serial port ---- */

static void open_pty(void) {
	const char *failed;
	if (pty_port_open(&port, tty_link, &failed) < 0) die("%s (%s): %s", failed, tty_link, strerror(errno));
}

/* A host opening the port is the DTR edge that resets an Uno. */
static void watch_host(void) {
	switch (pty_port_watch(&port)) {
	case PTY_HOST_OPENED:
		out_len = 0;
		broadcast("host open");
		reset_mcu(MCUSR_EXTRF, "external");
		break;
	case PTY_HOST_CLOSED:
		out_len = 0;
		broadcast("host close");
		save_flash(current_flash());
		break;
	case PTY_HOST_UNCHANGED:
		break;
	}
}

static void flush_output(void) {
	if (out_len == 0) return;
	ssize_t n = write(port.master_fd, out_buf, out_len);
	/* a host that does not read loses bytes, as with a USB-serial chip */
	if (n > 0 && (size_t)n < out_len) memmove(out_buf, out_buf + n, out_len - n);
	out_len = n > 0 ? out_len - n : (errno == EAGAIN ? out_len : 0);
	if (out_len == sizeof out_buf) out_len = 0;
}

/* ---- control socket ---- */

static void open_control(void) {
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(sock_path) >= sizeof addr.sun_path) die("socket path too long: %s", sock_path);
	strcpy(addr.sun_path, sock_path);
	unlink(sock_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listen_fd, 8) < 0)
		die("cannot listen on %s: %s", sock_path, strerror(errno));
}

static avr_irq_t *pin_irq(const char *name) {
	if (halted || strlen(name) != 2 || !strchr(PORTS, name[0]) || name[1] < '0' || name[1] > '7') return NULL;
	return avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(name[0]), name[1] - '0');
}

static void run_command(struct client *c, char *line) {
	char verb[24] = "", arg1[16] = "";
	long value = 0;
	int n = sscanf(line, "%23s %15s %ld", verb, arg1, &value);
	if (n < 1) return;
	if (!strcmp(verb, "reset")) {
		reset_mcu(MCUSR_EXTRF, "external");
		reply(c, "ok %llu", simulated_ms());
	} else if (!strcmp(verb, "get") && n >= 2) {
		avr_irq_t *irq = pin_irq(arg1);
		if (irq) reply(c, "ok %s %u", arg1, irq->value & 1);
		else reply(c, "error no pin %s", arg1);
	} else if (!strcmp(verb, "set") && n == 3) {
		avr_irq_t *irq = pin_irq(arg1);
		if (irq && (value == 0 || value == 1)) {
			driven_pins[(strchr(PORTS, arg1[0]) - PORTS) * 8 + arg1[1] - '0'] = value;
			avr_raise_irq(irq, value);
			reply(c, "ok");
		} else reply(c, "error set wants a pin such as D2 and 0 or 1");
	} else if (!strcmp(verb, "adc") && n == 3) {
		char *end;
		long channel = strtol(arg1, &end, 10);
		avr_irq_t *irq = halted || *end || channel < 0 || channel >= ADC_IRQ_COUNT ? NULL
			: avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + channel);
		if (irq && value >= 0 && value <= 5000) {
			adc_millivolts[channel] = value;
			avr_raise_irq(irq, value);
			reply(c, "ok");
		} else reply(c, "error adc wants a channel and 0..5000 mV");
	} else if (!strcmp(verb, "corrupt-next-page")) {
		char *end = arg1;
		unsigned long address = n >= 2 ? strtoul(arg1, &end, 0) : 0;
		if (n >= 2 && (*end || address >= boot_address)) {
			reply(c, "error corrupt-next-page wants an application flash address below 0x%x, not %s", boot_address, arg1);
		} else {
			corrupt_page = n >= 2 ? (int64_t)address : ANY_PAGE;
			reply(c, "ok");
		}
	} else if (!strcmp(verb, "status")) {
		reply(c, "ok state=%s pc=0x%x cycle=%llu seconds=%.3f behind=%.3f uart-baud=%u host=%s host-baud=%u", halted ? "halted" : "running",
			halted ? 0 : avr->pc, (unsigned long long)(halted ? 0 : avr->cycle),
			halted ? 0.0 : (double)avr->cycle / clock_hz,
			halted ? 0.0 : ((double)(monotonic_ns() - base_wall_ns) / 1e9 - (double)(avr->cycle - base_cycle) / clock_hz),
			halted ? 0 : uart_baud(), port.host_open ? "open" : "closed", port.host_open ? pty_port_host_baud(&port) : 0);
	} else if (!strcmp(verb, "save")) {
		save_flash(current_flash());
		reply(c, "ok");
	} else if (!strcmp(verb, "quit")) {
		reply(c, "ok");
		stop_requested = 1;
	} else {
		reply(c, "error unknown command: %s", verb);
	}
}

static void accept_client(void) {
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) return;
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd < 0) {
			clients[i].fd = fd;
			clients[i].len = 0;
			return;
		}
	close(fd);
}

static void read_client(struct client *c) {
	ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
	if (n <= 0) {
		if (n < 0 && errno == EAGAIN) return;
		close(c->fd);
		c->fd = -1;
		return;
	}
	c->len += n;
	char *newline;
	while (c->fd >= 0 && (newline = memchr(c->buf, '\n', c->len))) {
		*newline = 0;
		run_command(c, c->buf);
		if (c->fd < 0) return;
		size_t used = newline + 1 - c->buf;
		memmove(c->buf, newline + 1, c->len - used);
		c->len -= used;
	}
	if (c->len == sizeof c->buf - 1) c->len = 0; /* an overlong line is dropped */
}

/* ---- main loop ---- */

static void on_signal(int sig) {
	(void)sig;
	stop_requested = 1;
}

static void wait_for_events(uint64_t timeout_ns) {
	struct pollfd pfds[1 + MAX_CLIENTS];
	int n = 0;
	pfds[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
	for (int i = 0; i < MAX_CLIENTS; i++) pfds[n++] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
	struct timespec ts = {.tv_sec = timeout_ns / 1000000000ull, .tv_nsec = timeout_ns % 1000000000ull};
	if (ppoll(pfds, n, &ts, NULL) <= 0) return;
	if (pfds[0].revents & POLLIN) accept_client();
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (pfds[1 + i].fd >= 0 && pfds[1 + i].revents) read_client(&clients[i]);
}

static const char *arg(int argc, char **argv, const char *name, int required) {
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name)) return argv[i + 1];
	if (required) die("missing %s", name);
	return NULL;
}

int main(int argc, char **argv) {
	mcu_name = arg(argc, argv, "--mcu", 1);
	clock_hz = strtoul(arg(argc, argv, "--clock", 1), NULL, 0);
	boot_address = strtoul(arg(argc, argv, "--boot-address", 1), NULL, 0);
	boot_hex = arg(argc, argv, "--bootloader", 1);
	flash_path = arg(argc, argv, "--flash-file", 1);
	state_dir = arg(argc, argv, "--state-dir", 1);
	app_hex = arg(argc, argv, "--app-hex", 0);
	snprintf(tty_link, sizeof tty_link, "%s/tty", state_dir);
	snprintf(sock_path, sizeof sock_path, "%s/control.sock", state_dir);
	snprintf(pid_path, sizeof pid_path, "%s/bench.pid", state_dir);
	for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;
	memset(driven_pins, -1, sizeof driven_pins);
	for (int channel = 0; channel < ADC_IRQ_COUNT; channel++) adc_millivolts[channel] = -1;

	/* the flash size comes from simavr's own description of the MCU */
	avr_t *probe = avr_make_mcu_by_name(mcu_name);
	if (!probe) die("simavr does not know the MCU %s", mcu_name);
	flash_size = probe->flashend + 1;
	free(probe);
	uint8_t *flash = malloc(flash_size);
	flash_copy = malloc(flash_size);
	flash_saved = malloc(flash_size);
	memset(flash, 0xff, flash_size);
	int fd = open(flash_path, O_RDONLY);
	if (fd >= 0) {
		if (read(fd, flash, flash_size) != (ssize_t)flash_size) memset(flash, 0xff, flash_size);
		close(fd);
	}
	memcpy(flash_saved, flash, flash_size);
	if (app_hex) {
		memset(flash, 0xff, boot_address);
		if (load_hex(app_hex, flash, boot_address) < 0) die("cannot load %s below the bootloader at 0x%x", app_hex, boot_address);
	}
	/* the bootloader section is fuse-protected on a real board: always the one we built */
	memset(flash + boot_address, 0xff, flash_size - boot_address);
	if (load_hex(boot_hex, flash, flash_size) < 0) die("cannot load bootloader %s", boot_hex);

	make_mcu(flash);
	memcpy(flash_copy, flash, flash_size);
	free(flash);

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGHUP, on_signal);
	signal(SIGPIPE, SIG_IGN);
	open_pty();
	open_control();
	reset_mcu(MCUSR_PORF, "power-on");
	save_flash(avr->flash);

	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", pid_path);
	FILE *pid_file = fopen(tmp, "w");
	if (!pid_file) die("cannot write %s: %s", tmp, strerror(errno));
	fprintf(pid_file, "%d\n%s\n", getpid(), tty_link);
	fclose(pid_file);
	rename(tmp, pid_path);
	printf("ready %s\n", tty_link);
	fflush(stdout);

	const avr_cycle_count_t slice = clock_hz / 1000;
	uint64_t last_save = monotonic_ns();
	while (!stop_requested) {
		watch_host();
		uint64_t wall = monotonic_ns() - base_wall_ns;
		uint64_t simulated = halted ? wall : (avr->cycle - base_cycle) * 1000000000ull / clock_hz;
		if (simulated > wall) {
			wait_for_events(simulated - wall < 2000000 ? simulated - wall : 2000000);
			continue;
		}
		/* fell far behind (a stopped process, a busy machine): do not race to catch up */
		if (wall - simulated > 200000000ull) rebase_clock();
		wait_for_events(0);
		if (!halted) {
			avr_cycle_count_t end = avr->cycle + slice;
			while (avr->cycle < end) {
				int state = avr_run(avr);
				if (state == cpu_Done || state == cpu_Crashed) {
					if (state == cpu_Crashed) memcpy(flash_copy, avr->flash, flash_size);
					halted = 1;
					broadcast("halted %s", state == cpu_Done ? "sleeping with interrupts off" : "crashed");
					break;
				}
				if (reset_seen) {
					/* a watchdog reset inside simavr also cleared our timers */
					reset_seen = 0;
					avr->data[REG_MCUSR] |= MCUSR_WDRF;
					arm_feed();
					apply_inputs();
					broadcast("reset watchdog");
				}
			}
		}
		if (port.host_open) flush_output();
		if (monotonic_ns() - last_save > 1000000000ull) {
			save_flash(current_flash());
			last_save = monotonic_ns();
		}
	}
	save_flash(current_flash());
	unlink(pid_path);
	unlink(sock_path);
	unlink(tty_link);
	return 0;
}
