/*
 * One simulated Arduino-class board: simavr running the real bootloader and whatever was
 * flashed, its UART0 on a pseudo-terminal, paced to wall-clock time.
 *
 *   bench-board --mcu atmega328p --clock 16000000 --boot-address 0x7e00 --bootloader boot.hex
 *               --flash-file flash.bin --state-dir DIR
 *
 * In DIR it creates `tty` (a link to the pty slave, what a host opens like /dev/ttyACM0) and
 * `control.sock`, a line protocol for tests and `boardfleet bench`:
 *   reset | get B5 (→ value B5 1) | set D2 1 | adc 0 2500 | save | quit   (→ ok, or error …)
 * Pin changes are pushed to every client as `pin B5 1` lines.
 * It prints `ready <tty path>` on stdout once both exist.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "sim_avr.h"
#include "sim_hex.h"
#include "sim_regbit.h"
#include "avr_adc.h"
#include "avr_ioport.h"
#include "avr_uart.h"

#define MAX_CLIENTS 8
#define PORT_LETTERS "ABCDEFGHJKL"
/* The MCU runs in slices of this many microseconds of simulated time, then waits for the wall clock. */
#define SLICE_US 1000

static avr_t *avr;
static int master_fd = -1;
static int listen_fd = -1;
static int clients[MAX_CLIENTS];
static volatile sig_atomic_t quit_requested;
static int uart_accepting = 1; /* simavr's XON/XOFF: whether the UART's input FIFO has room */
static int host_connected;
static long host_rate; /* the baud rate the host set on the port, re-read every 50 ms */
static char slave_path[256];
static const char *flash_file;
static uint8_t *saved_flash;
static uint32_t boot_address;
static char tty_link[4096], socket_path[4096];

static uint64_t now_us(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void fail(const char *what) {
	fprintf(stderr, "bench-board: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void broadcast(const char *line) {
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i] >= 0 && write(clients[i], line, strlen(line)) < 0) {
			close(clients[i]);
			clients[i] = -1;
		}
}

static int baud_mismatch(void);

/* What a byte sent at the wrong baud rate turns into: deterministic garbage. */
static uint8_t garble(uint8_t byte) {
	return byte ^ 0xA5;
}

/* MCU output goes to the host only while a host has the port open, as with a USB-serial chip. */
static void uart_output(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	(void)param;
	if (!host_connected) return;
	uint8_t byte = baud_mismatch() ? garble(value) : value;
	if (write(master_fd, &byte, 1) < 0 && errno != EAGAIN) fail("write to pty");
}

static void uart_xon(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq; (void)value; (void)param;
	uart_accepting = 1;
}

static void uart_xoff(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq; (void)value; (void)param;
	uart_accepting = 0;
}

static void pin_changed(struct avr_irq_t *irq, uint32_t value, void *param) {
	char line[32];
	snprintf(line, sizeof line, "pin %c%u %u\n", (char)(intptr_t)param, irq->irq, value ? 1 : 0);
	broadcast(line);
}

/* An external reset (DTR through the board's capacitor, or the button) makes the bootloader wait
 * for a host; at power-on it starts the sketch at once. It tells the two apart by MCUSR. */
static void reset_mcu(int external) {
	avr_reset(avr);
	avr->state = cpu_Running;
	avr_regbit_t cause = external ? avr->reset_flags.extrf : avr->reset_flags.porf;
	if (cause.reg) avr_regbit_set(avr, cause);
	uart_accepting = 1;
}

static void save_flash(void) {
	if (!flash_file || memcmp(saved_flash, avr->flash, avr->flashend + 1) == 0) return;
	char temporary[4200];
	snprintf(temporary, sizeof temporary, "%s.tmp", flash_file);
	int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) fail("open flash file");
	if (write(fd, avr->flash, avr->flashend + 1) != (ssize_t)(avr->flashend + 1)) fail("write flash file");
	fsync(fd);
	close(fd);
	if (rename(temporary, flash_file) < 0) fail("rename flash file");
	memcpy(saved_flash, avr->flash, avr->flashend + 1);
}

static void load_hex(const char *path, uint32_t expected_base) {
	ihex_chunk_p chunks = NULL;
	int count = read_ihex_chunks(path, &chunks);
	if (count <= 0) {
		fprintf(stderr, "bench-board: cannot read %s as Intel HEX\n", path);
		exit(1);
	}
	for (int i = 0; i < count; i++) {
		if (chunks[i].baseaddr < expected_base || chunks[i].baseaddr + chunks[i].size > avr->flashend + 1) {
			fprintf(stderr, "bench-board: %s has data at 0x%x outside 0x%x..0x%x\n", path, chunks[i].baseaddr,
				expected_base, avr->flashend);
			exit(1);
		}
		memcpy(avr->flash + chunks[i].baseaddr, chunks[i].data, chunks[i].size);
	}
	free_ihex_chunks(chunks);
}

static void open_pty(const char *state_dir) {
	master_fd = posix_openpt(O_RDWR | O_NOCTTY);
	if (master_fd < 0 || grantpt(master_fd) < 0 || unlockpt(master_fd) < 0) fail("posix_openpt");
	const char *slave = ptsname(master_fd);
	snprintf(slave_path, sizeof slave_path, "%s", slave);
	/* Raw line discipline once, so no echo or line editing happens before a host configures it. */
	int slave_fd = open(slave, O_RDWR | O_NOCTTY);
	if (slave_fd < 0) fail("open pty slave");
	struct termios tio;
	tcgetattr(slave_fd, &tio);
	cfmakeraw(&tio);
	tcsetattr(slave_fd, TCSANOW, &tio);
	close(slave_fd);
	fcntl(master_fd, F_SETFL, fcntl(master_fd, F_GETFL) | O_NONBLOCK);
	snprintf(tty_link, sizeof tty_link, "%s/tty", state_dir);
	unlink(tty_link);
	if (symlink(slave, tty_link) < 0) fail("symlink tty");
}

static void open_control_socket(const char *state_dir) {
	struct sockaddr_un address = {.sun_family = AF_UNIX};
	snprintf(socket_path, sizeof socket_path, "%s/control.sock", state_dir);
	if (strlen(socket_path) >= sizeof address.sun_path) {
		fprintf(stderr, "bench-board: state dir path too long for a socket: %s\n", socket_path);
		exit(1);
	}
	strcpy(address.sun_path, socket_path);
	unlink(socket_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&address, sizeof address) < 0 || listen(listen_fd, 4) < 0)
		fail("control socket");
	for (int i = 0; i < MAX_CLIENTS; i++) clients[i] = -1;
}

static avr_irq_t *port_pin_irq(char port, int bit) {
	if (!strchr(PORT_LETTERS, port) || bit < 0 || bit > 7) return NULL;
	return avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port), bit);
}

static void run_command(int client, char *line) {
	char reply[64] = "ok\n";
	char port;
	int bit, value, channel, millivolts;
	if (strcmp(line, "reset") == 0) {
		reset_mcu(1);
	} else if (strcmp(line, "save") == 0) {
		save_flash();
	} else if (strcmp(line, "quit") == 0) {
		quit_requested = 1;
	} else if (sscanf(line, "get %c%d", &port, &bit) == 2) {
		avr_irq_t *irq = port_pin_irq(port, bit);
		if (irq) snprintf(reply, sizeof reply, "value %c%d %u\n", port, bit, irq->value ? 1 : 0);
		else snprintf(reply, sizeof reply, "error no pin %c%d\n", port, bit);
	} else if (sscanf(line, "set %c%d %d", &port, &bit, &value) == 3) {
		avr_irq_t *irq = port_pin_irq(port, bit);
		if (irq) avr_raise_irq(irq, value ? 1 : 0);
		else snprintf(reply, sizeof reply, "error no pin %c%d\n", port, bit);
	} else if (sscanf(line, "adc %d %d", &channel, &millivolts) == 2 && channel >= 0 && channel < 16) {
		avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + channel), millivolts);
	} else {
		snprintf(reply, sizeof reply, "error unknown command\n");
	}
	if (write(client, reply, strlen(reply)) < 0) { /* the client went away; it is dropped on its next read */ }
}

static void serve_control(void) {
	int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK);
	if (fd >= 0) {
		int slot = -1;
		for (int i = 0; i < MAX_CLIENTS && slot < 0; i++) if (clients[i] < 0) slot = i;
		if (slot < 0) close(fd);
		else clients[slot] = fd;
	}
	for (int i = 0; i < MAX_CLIENTS; i++) {
		if (clients[i] < 0) continue;
		char buffer[256];
		ssize_t n = read(clients[i], buffer, sizeof buffer - 1);
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			close(clients[i]);
			clients[i] = -1;
			continue;
		}
		if (n < 0) continue;
		buffer[n] = 0;
		/* Commands are short and sent one line at a time; split whatever arrived on newlines. */
		for (char *save = NULL, *line = strtok_r(buffer, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save))
			run_command(clients[i], line);
	}
}

static long host_baud(void) {
	static const struct { speed_t code; long rate; } rates[] = {
		{B1200, 1200}, {B2400, 2400}, {B4800, 4800}, {B9600, 9600}, {B19200, 19200}, {B38400, 38400},
		{B57600, 57600}, {B115200, 115200}, {B230400, 230400}, {B460800, 460800}, {B500000, 500000},
		{B921600, 921600}, {B1000000, 1000000}};
	/* The slave's settings are what the host chose; a short-lived open reads them without looking
	 * like a host (the host holds the port open meanwhile). */
	int fd = open(slave_path, O_RDWR | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) return 0;
	struct termios tio;
	int ok = tcgetattr(fd, &tio) == 0;
	close(fd);
	if (!ok) return 0;
	speed_t speed = cfgetospeed(&tio);
	for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
		if (rates[i].code == speed) return rates[i].rate;
	return 0;
}

/* USART0's rate as the firmware set it: UBRR0 and U2X0 (the same addresses on the 328P and 2560). */
static long mcu_baud(void) {
	unsigned ubrr = avr->data[0xC4] | (avr->data[0xC5] & 0x0F) << 8;
	int double_speed = avr->data[0xC0] & 0x02;
	return (long)(avr->frequency / ((double_speed ? 8UL : 16UL) * (ubrr + 1)));
}

static void refresh_host_rate(void) {
	static uint64_t last_check;
	uint64_t now = now_us();
	if (now - last_check < 50000) return;
	last_check = now;
	host_rate = host_baud();
}

/* Host and MCU disagree on the baud rate, so each sees garbage. A UART tolerates a few percent
 * (optiboot's 115200 at 16 MHz is 2.1 % off). The MCU's side is read per byte: firmware often
 * sends its first byte right after setting the rate. */
static int baud_mismatch(void) {
	long mcu = mcu_baud();
	return host_rate > 0 && (host_rate > mcu * 105 / 100 || host_rate < mcu * 95 / 100);
}

/* POLLHUP on the master means no host has the slave open: its end is what a host's open looks like. */
static void watch_host(void) {
	struct pollfd pfd = {.fd = master_fd, .events = POLLIN};
	poll(&pfd, 1, 0);
	int connected = !(pfd.revents & POLLHUP);
	if (connected && !host_connected) {
		tcflush(master_fd, TCIOFLUSH);
		reset_mcu(1);
	}
	host_connected = connected;
	if (!connected) return;
	refresh_host_rate();
	if (!uart_accepting) return;
	uint8_t byte;
	/* Feed while the UART's FIFO has room; simavr then delivers the bytes at the UART's baud rate. */
	while (uart_accepting && read(master_fd, &byte, 1) == 1)
		avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT), baud_mismatch() ? garble(byte) : byte);
}

static void on_signal(int signal) {
	(void)signal;
	quit_requested = 1;
}

static void no_sleep(avr_t *avr_, avr_cycle_count_t how_long) {
	(void)avr_; (void)how_long; /* pacing is done against the wall clock in main() */
}


int main(int argc, char **argv) {
	const char *mcu = NULL, *bootloader = NULL, *state_dir = NULL;
	uint32_t clock_hz = 16000000;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mcu")) mcu = argv[i + 1];
		else if (!strcmp(argv[i], "--clock")) clock_hz = strtoul(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--boot-address")) boot_address = strtoul(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--bootloader")) bootloader = argv[i + 1];
		else if (!strcmp(argv[i], "--flash-file")) flash_file = argv[i + 1];
		else if (!strcmp(argv[i], "--state-dir")) state_dir = argv[i + 1];
		else { fprintf(stderr, "bench-board: unknown option %s\n", argv[i]); return 2; }
	}
	if (!mcu || !bootloader || !state_dir || !boot_address) {
		fprintf(stderr, "usage: bench-board --mcu M --clock HZ --boot-address A --bootloader HEX [--flash-file F] --state-dir D\n");
		return 2;
	}
	avr = avr_make_mcu_by_name(mcu);
	if (!avr) { fprintf(stderr, "bench-board: simavr does not know the MCU %s\n", mcu); return 1; }
	avr_init(avr);
	avr->frequency = clock_hz;
	avr->vcc = avr->avcc = avr->aref = 5000;
	avr->sleep = no_sleep;
	avr->log = 0;
	saved_flash = malloc(avr->flashend + 1);
	memset(avr->flash, 0xff, avr->flashend + 1);
	if (flash_file) {
		FILE *f = fopen(flash_file, "rb");
		if (f) {
			size_t n = fread(avr->flash, 1, avr->flashend + 1, f);
			fclose(f);
			if (n != avr->flashend + 1) memset(avr->flash, 0xff, avr->flashend + 1);
		}
	}
	/* The boot section always holds the bootloader, as on a board whose lock bits protect it. */
	memset(avr->flash + boot_address, 0xff, avr->flashend + 1 - boot_address);
	load_hex(bootloader, boot_address);
	memcpy(saved_flash, avr->flash, avr->flashend + 1);
	avr->codeend = avr->flashend;
	/* BOOTRST: every reset, the watchdog's included, starts the bootloader, which decides from
	 * MCUSR whether to wait for a host (external reset) or start the sketch. */
	avr->reset_pc = boot_address;

	avr_irq_t *uart_out = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT);
	avr_irq_register_notify(uart_out, uart_output, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON), uart_xon, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF), uart_xoff, NULL);
	uint32_t uart_flags = 0;
	avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &uart_flags);
	/* No usleep on every UART poll (simavr's default): we pace to the wall clock ourselves. */
	uart_flags &= ~(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
	avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &uart_flags);
	for (const char *p = PORT_LETTERS; *p; p++)
		for (int bit = 0; bit < 8; bit++) {
			avr_irq_t *irq = port_pin_irq(*p, bit);
			if (irq) avr_irq_register_notify(irq, pin_changed, (void *)(intptr_t)*p);
		}

	mkdir(state_dir, 0755);
	open_pty(state_dir);
	open_control_socket(state_dir);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	reset_mcu(0);
	printf("ready %s\n", tty_link);
	fflush(stdout);

	const uint64_t cycles_per_slice = (uint64_t)clock_hz / (1000000 / SLICE_US);
	uint64_t started = now_us(), slices = 0, last_save = started;
	while (!quit_requested) {
		watch_host();
		serve_control();
		avr_cycle_count_t slice_end = avr->cycle + cycles_per_slice;
		while (avr->cycle < slice_end) {
			int state = avr_run(avr);
			if (state == cpu_Done || state == cpu_Crashed) {
				/* A crashed program stays stopped until the next reset, like a hung board. */
				avr->cycle = slice_end;
				break;
			}
		}
		slices++;
		uint64_t due = started + slices * SLICE_US, now = now_us();
		if (due > now) usleep(due - now);
		else if (now - due > 200000) { started = now; slices = 0; } /* fell far behind: don't race to catch up */
		if (now - last_save > 1000000) { save_flash(); last_save = now; }
	}
	save_flash();
	unlink(tty_link);
	unlink(socket_path);
	return 0;
}
