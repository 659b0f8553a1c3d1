/*
 * http-hello: a tiny HTTP service meant to run as PID 1 of a unikernel-style image.
 *   GET /        → 200 "hello <version>"
 *   GET /healthz → 200 "ok"
 * SIGINT or SIGTERM (the VM's reboot key reaches PID 1 as SIGINT) syncs and powers the VM off.
 * HELLO_CRASH=1 in the environment makes it fail at start, for rollback drills.
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stopping = 0;

static void on_stop(int signal_number) {
  (void)signal_number;
  stopping = 1;
}

static void answer(int client, const char *version) {
  char request[2048];
  ssize_t got = read(client, request, sizeof request - 1);
  if (got <= 0) return;
  request[got] = '\0';
  char body[128];
  const char *status = "200 OK";
  if (strncmp(request, "GET /healthz ", 13) == 0) {
    snprintf(body, sizeof body, "ok\n");
  } else if (strncmp(request, "GET / ", 6) == 0) {
    snprintf(body, sizeof body, "hello %s\n", version);
  } else {
    status = "404 Not Found";
    snprintf(body, sizeof body, "not found\n");
  }
  char response[512];
  int length = snprintf(response, sizeof response,
                        "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%s",
                        status, strlen(body), body);
  if (write(client, response, (size_t)length) < 0) perror("http-hello: write");
}

int main(void) {
  const char *version = getenv("BOARDFLEET_IMAGE_VERSION");
  const char *port_text = getenv("HELLO_PORT");
  int port = port_text ? atoi(port_text) : 8080;
  if (!version) version = "unknown";
  if (getenv("HELLO_CRASH") && strcmp(getenv("HELLO_CRASH"), "1") == 0) {
    printf("http-hello %s: HELLO_CRASH=1, failing at start on purpose\n", version);
    fflush(stdout);
    abort();
  }

  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_stop;
  sigaction(SIGINT, &action, NULL); /* no SA_RESTART: accept() returns EINTR */
  sigaction(SIGTERM, &action, NULL);

  int server = socket(AF_INET, SOCK_STREAM, 0);
  int on = 1;
  setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(server, (struct sockaddr *)&address, sizeof address) != 0 || listen(server, 16) != 0) {
    perror("http-hello: listen");
    return 1;
  }
  printf("http-hello %s listening on %d\n", version, port);
  fflush(stdout);
  while (!stopping) {
    int client = accept(server, NULL, NULL);
    if (client < 0) continue;
    answer(client, version);
    close(client);
  }
  printf("http-hello %s: stopping, powering off\n", version);
  fflush(stdout);
  sync();
  if (getpid() == 1) reboot(RB_POWER_OFF);
  return 0;
}
