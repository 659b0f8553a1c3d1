#define _GNU_SOURCE
#include "pty-port.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

uint64_t monotonic_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

void die(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", program_name);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

size_t format_line(char *line, size_t size, const char *fmt, va_list ap) {
	int n = vsnprintf(line, size - 1, fmt, ap);
	/* vsnprintf returns the length it wanted: a longer line is cut, its newline kept */
	size_t length = n < 0 ? 0 : (size_t)n < size - 1 ? (size_t)n : size - 2;
	line[length++] = '\n';
	return length;
}

int pty_port_open(struct pty_port *port, const char *link_path, const char **failed) {
	port->inotify_fd = -1;
	port->own_opens = 0;
	port->host_open = 0;
	port->master_fd = posix_openpt(O_RDWR | O_NOCTTY);
	if (port->master_fd < 0 || grantpt(port->master_fd) < 0 || unlockpt(port->master_fd) < 0) {
		*failed = "no pseudo-terminal";
		return -1;
	}
	/* posix_openpt may drop O_NONBLOCK; a blocking read would stall the board until the host writes */
	fcntl(port->master_fd, F_SETFL, fcntl(port->master_fd, F_GETFL) | O_NONBLOCK);
	fcntl(port->master_fd, F_SETFD, FD_CLOEXEC);
	struct termios tio;
	if (tcgetattr(port->master_fd, &tio) == 0) {
		cfmakeraw(&tio);
		tcsetattr(port->master_fd, TCSANOW, &tio);
	}
	const char *slave = ptsname(port->master_fd);
	/* The master only reports POLLHUP once a slave has been closed: open and close it once. */
	int slave_fd = open(slave, O_RDWR | O_NOCTTY);
	if (slave_fd < 0) {
		*failed = "cannot open the pty slave";
		return -1;
	}
	close(slave_fd);
	port->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (port->inotify_fd >= 0 && inotify_add_watch(port->inotify_fd, slave, IN_OPEN) < 0) {
		close(port->inotify_fd);
		port->inotify_fd = -1;
	}
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", link_path);
	unlink(tmp);
	if (symlink(slave, tmp) < 0 || rename(tmp, link_path) < 0) {
		*failed = "cannot link the port";
		return -1;
	}
	return 0;
}

/* How many times another process opened the slave since the last call. */
static int host_opens(struct pty_port *port) {
	if (port->inotify_fd < 0) return 0;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int opens = 0;
	ssize_t n;
	while ((n = read(port->inotify_fd, buf, sizeof buf)) > 0)
		for (char *at = buf; at < buf + n; at += sizeof(struct inotify_event) + ((struct inotify_event *)at)->len)
			if (((struct inotify_event *)at)->mask & IN_OPEN) {
				if (port->own_opens > 0) port->own_opens--;
				else opens++;
			}
	return opens;
}

/* No process has the slave open while the master reports POLLHUP. */
enum pty_host_change pty_port_watch(struct pty_port *port) {
	struct pollfd pfd = {.fd = port->master_fd, .events = 0};
	poll(&pfd, 1, 0);
	int open_now = !(pfd.revents & POLLHUP);
	int reopened = host_opens(port) > 0;
	if (open_now && (!port->host_open || reopened)) {
		port->host_open = 1;
		return PTY_HOST_OPENED;
	}
	if (!open_now && port->host_open) {
		port->host_open = 0;
		return PTY_HOST_CLOSED;
	}
	return PTY_HOST_UNCHANGED;
}

static uint32_t speed_value(speed_t code) {
	static const struct { speed_t code; uint32_t value; } speeds[] = {
		{B1200, 1200}, {B2400, 2400}, {B4800, 4800}, {B9600, 9600}, {B19200, 19200}, {B38400, 38400},
		{B57600, 57600}, {B115200, 115200}, {B230400, 230400}, {B460800, 460800}, {B500000, 500000},
		{B921600, 921600}, {B1000000, 1000000}, {B2000000, 2000000},
	};
	for (size_t i = 0; i < sizeof speeds / sizeof speeds[0]; i++)
		if (speeds[i].code == code) return speeds[i].value;
	return 0;
}

uint32_t pty_port_host_baud(struct pty_port *port) {
	static uint64_t checked_at;
	static uint32_t baud;
	uint64_t now = monotonic_ns();
	if (now - checked_at < 20000000ull) return baud;
	checked_at = now;
	/* A second, brief opener of the slave: the host still holds it, so no hang-up is seen. */
	int fd = open(ptsname(port->master_fd), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0) port->own_opens++;
	struct termios tio;
	baud = fd >= 0 && tcgetattr(fd, &tio) == 0 ? speed_value(cfgetospeed(&tio)) : 0;
	if (fd >= 0) close(fd);
	return baud;
}
