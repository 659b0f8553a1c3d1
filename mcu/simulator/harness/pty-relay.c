/*
 * pty-relay: the serial port of a board simulated in another process (the rp2040js Pico). Node
 * cannot make a pseudo-terminal, so this owns one and relays its bytes:
 *
 *   pty-relay --link DIR/tty
 *
 * stdin: bytes for the host (dropped while no host has the port open, as a USB-serial chip
 * does); stdout: bytes the host wrote; fd 3: event lines "ready <link>", "host open",
 * "host close", "host baud <rate>". Ends when stdin closes (its simulator is gone) or on
 * SIGTERM, removing the link.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pty-port.h"

#define EVENTS_FD 3
/* while the port is closed the master is not polled (it reports POLLHUP all along): look again this often */
#define CLOSED_POLL_MS 5

static struct pty_port port;
static const char *link_path;
static volatile sig_atomic_t stop_requested;

const char *const program_name = "pty-relay";

static void event(const char *fmt, ...) {
	char line[4200];
	va_list ap;
	va_start(ap, fmt);
	size_t n = format_line(line, sizeof line, fmt, ap);
	va_end(ap);
	if (write(EVENTS_FD, line, n) < 0) stop_requested = 1;
}

static void on_signal(int sig) {
	(void)sig;
	stop_requested = 1;
}

static void watch_host(uint32_t *reported_baud) {
	switch (pty_port_watch(&port)) {
	case PTY_HOST_OPENED:
		*reported_baud = 0;
		event("host open");
		break;
	case PTY_HOST_CLOSED:
		event("host close");
		break;
	case PTY_HOST_UNCHANGED:
		break;
	}
	if (!port.host_open) return;
	uint32_t baud = pty_port_host_baud(&port);
	if (baud != *reported_baud) {
		*reported_baud = baud;
		event("host baud %u", baud);
	}
}

/* Copies what is readable on `from` to `to`; returns 0 at end of input. */
static int relay(int from, int to, int deliver) {
	char buf[4096];
	ssize_t n = read(from, buf, sizeof buf);
	if (n == 0) return 0;
	if (n < 0) return errno == EAGAIN || errno == EINTR || errno == EIO;
	/* a host that does not read loses bytes, as with a USB-serial chip */
	for (ssize_t done = 0; deliver && done < n;) {
		ssize_t written = write(to, buf + done, n - done);
		if (written <= 0) break;
		done += written;
	}
	return 1;
}

int main(int argc, char **argv) {
	if (argc != 3 || strcmp(argv[1], "--link")) die("usage: pty-relay --link PATH");
	link_path = argv[2];
	const char *failed;
	if (pty_port_open(&port, link_path, &failed) < 0) die("%s (%s): %s", failed, link_path, strerror(errno));
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGHUP, on_signal);
	signal(SIGPIPE, SIG_IGN);
	event("ready %s", link_path);

	uint32_t reported_baud = 0;
	while (!stop_requested) {
		watch_host(&reported_baud);
		struct pollfd pfds[3] = {
			{.fd = STDIN_FILENO, .events = POLLIN},
			{.fd = port.host_open ? port.master_fd : -1, .events = POLLIN},
			{.fd = port.inotify_fd, .events = POLLIN},
		};
		/* an open host is polled for its bytes and hang-up; its baud rate is looked at every 20 ms */
		if (poll(pfds, 3, port.host_open ? 20 : CLOSED_POLL_MS) < 0 && errno != EINTR) break;
		if (pfds[0].revents && !relay(STDIN_FILENO, port.master_fd, port.host_open)) break;
		if (pfds[1].revents & POLLIN) relay(port.master_fd, STDOUT_FILENO, 1);
	}
	unlink(link_path);
	return 0;
}
