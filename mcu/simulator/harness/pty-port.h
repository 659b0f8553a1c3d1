/*
 * pty-port: a board's USB-serial port as a pseudo-terminal. The slave is linked at a path hosts
 * open like /dev/ttyACM0; the master side tells when a host opens or closes it (the DTR edge
 * that resets a board) and the rate the host set. Shared by bench-board (simavr) and pty-relay
 * (the rp2040js Pico), with the line and error helpers both programs write their events with.
 */
#ifndef PTY_PORT_H
#define PTY_PORT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct pty_port {
	int master_fd;   /* non-blocking, raw */
	int inotify_fd;  /* open events on the slave: a close and reopen faster than our poll; -1 without */
	int own_opens;   /* our own opens of the slave, not to be taken for a host's */
	int host_open;
};

enum pty_host_change { PTY_HOST_UNCHANGED, PTY_HOST_OPENED, PTY_HOST_CLOSED };

/* Opens a pty and links its slave at `link_path`; returns -1 with errno and `*failed` naming the step. */
int pty_port_open(struct pty_port *port, const char *link_path, const char **failed);

/* Whether a host opened (or closed and reopened) the port since the last call, or closed it. */
enum pty_host_change pty_port_watch(struct pty_port *port);

/* The rate the host set on its end (0: unknown), looked up at most every 20 ms. */
uint32_t pty_port_host_baud(struct pty_port *port);

/* The program's name for its error messages, defined by each program. */
extern const char *const program_name;

/* Prints "<program_name>: <message>" on stderr and exits 2. */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);

/* Formats one event line into `line`, cut to fit, with its '\n'; returns its length. */
size_t format_line(char *line, size_t size, const char *fmt, va_list ap);

uint64_t monotonic_ns(void);

#endif
