/*
 * boardfleet-init: the first program of a Boardfleet unikernel-style image. It does what the
 * kernel cannot do by itself and then execs the application, which becomes PID 1: there is no
 * shell and no init system left behind.
 *
 * It reads /etc/boardfleet/init.conf, one directive per line:
 *   hostname NAME
 *   module PATH              load a kernel module (in file order; dependencies first)
 *   net none | net dhcp IFACE | net static IFACE ADDRESS/PREFIX [GATEWAY]
 *   dns ADDRESS              (static network) a name server for /etc/resolv.conf
 *   env NAME=VALUE           a default: the kernel command line's NAME=VALUE words win
 *   exec PATH                the application
 *   arg WORD                 one argument of the application, in order
 *
 * Every line it prints starts with "boardfleet-init:" so a console log shows where start-up stopped.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/reboot.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CONFIG_FILE "/etc/boardfleet/init.conf"
#define MAX_ARGS 64
#define MAX_DNS 4

static void say(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fputs("boardfleet-init: ", stdout);
  vprintf(format, args);
  fputc('\n', stdout);
  fflush(stdout);
  va_end(args);
}

/* Nothing can run: leave a reason on the console and end the VM instead of panicking the kernel. */
static void give_up(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fputs("boardfleet-init: fatal: ", stdout);
  vprintf(format, args);
  fputc('\n', stdout);
  fflush(stdout);
  va_end(args);
  sync();
  reboot(RB_POWER_OFF);
  _exit(1);
}

static void mount_or_warn(const char *source, const char *target, const char *type, unsigned long flags) {
  mkdir(target, 0755);
  if (mount(source, target, type, flags, NULL) != 0 && errno != EBUSY)
    say("mount %s on %s: %s", type, target, strerror(errno));
}

static void load_module(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    say("module %s: %s", path, strerror(errno));
    return;
  }
  if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
    say("module %s: %s", path, strerror(errno));
  close(fd);
}

static int interface_exists(const char *name) {
  char path[128];
  snprintf(path, sizeof path, "/sys/class/net/%s", name);
  return access(path, F_OK) == 0;
}

static int set_flags_up(int sock, const char *name) {
  struct ifreq request;
  memset(&request, 0, sizeof request);
  strncpy(request.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(sock, SIOCGIFFLAGS, &request) != 0) return -1;
  request.ifr_flags |= IFF_UP | IFF_RUNNING;
  return ioctl(sock, SIOCSIFFLAGS, &request);
}

static int set_address(int sock, const char *name, unsigned long request_code, struct in_addr value) {
  struct ifreq request;
  memset(&request, 0, sizeof request);
  strncpy(request.ifr_name, name, IFNAMSIZ - 1);
  struct sockaddr_in *address = (struct sockaddr_in *)&request.ifr_addr;
  address->sin_family = AF_INET;
  address->sin_addr = value;
  return ioctl(sock, request_code, &request);
}

static int add_default_route(int sock, struct in_addr gateway) {
  struct rtentry route;
  memset(&route, 0, sizeof route);
  struct sockaddr_in *destination = (struct sockaddr_in *)&route.rt_dst;
  struct sockaddr_in *via = (struct sockaddr_in *)&route.rt_gateway;
  struct sockaddr_in *mask = (struct sockaddr_in *)&route.rt_genmask;
  destination->sin_family = via->sin_family = mask->sin_family = AF_INET;
  via->sin_addr = gateway;
  route.rt_flags = RTF_UP | RTF_GATEWAY;
  return ioctl(sock, SIOCADDRT, &route);
}

static struct in_addr prefix_mask(int prefix) {
  struct in_addr mask;
  mask.s_addr = prefix <= 0 ? 0 : htonl(prefix >= 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1));
  return mask;
}

static void configure(const char *name, struct in_addr address, struct in_addr mask, struct in_addr gateway) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (set_address(sock, name, SIOCSIFADDR, address) != 0 || set_address(sock, name, SIOCSIFNETMASK, mask) != 0)
    say("%s: setting the address: %s", name, strerror(errno));
  if (set_flags_up(sock, name) != 0) say("%s: up: %s", name, strerror(errno));
  if (gateway.s_addr != 0 && add_default_route(sock, gateway) != 0 && errno != EEXIST)
    say("%s: default route: %s", name, strerror(errno));
  close(sock);
}

static void write_resolv_conf(struct in_addr *servers, int count) {
  if (count == 0) return;
  mkdir("/etc", 0755);
  FILE *file = fopen("/etc/resolv.conf", "w");
  if (!file) return;
  for (int i = 0; i < count; i++) fprintf(file, "nameserver %s\n", inet_ntoa(servers[i]));
  fclose(file);
}

/* DHCP (RFC 2131), only what a VM needs: DISCOVER, OFFER, REQUEST, ACK, asking for broadcast replies
 * because the interface has no address to receive a unicast reply on. */
struct dhcp_packet {
  uint8_t op, htype, hlen, hops;
  uint32_t xid;
  uint16_t secs, flags;
  uint32_t ciaddr, yiaddr, siaddr, giaddr;
  uint8_t chaddr[16];
  uint8_t sname[64];
  uint8_t file[128];
  uint32_t magic;
  uint8_t options[312];
};

struct dhcp_lease {
  struct in_addr address, mask, router, server;
  struct in_addr dns[MAX_DNS];
  int dns_count;
};

static size_t dhcp_request(struct dhcp_packet *packet, const uint8_t mac[6], uint32_t xid, uint8_t type,
                           const struct dhcp_lease *offer) {
  memset(packet, 0, sizeof *packet);
  packet->op = 1;
  packet->htype = 1;
  packet->hlen = 6;
  packet->xid = xid;
  packet->flags = htons(0x8000);
  memcpy(packet->chaddr, mac, 6);
  packet->magic = htonl(0x63825363);
  uint8_t *option = packet->options;
  *option++ = 53, *option++ = 1, *option++ = type;
  if (offer) {
    *option++ = 50, *option++ = 4;
    memcpy(option, &offer->address, 4), option += 4;
    *option++ = 54, *option++ = 4;
    memcpy(option, &offer->server, 4), option += 4;
  }
  *option++ = 55, *option++ = 3, *option++ = 1, *option++ = 3, *option++ = 6;
  *option++ = 255;
  return sizeof *packet - sizeof packet->options + (size_t)(option - packet->options);
}

/* The message type of a reply for `xid`, filling `lease`; 0 when it is not one. */
static int dhcp_parse(const struct dhcp_packet *packet, ssize_t length, uint32_t xid, struct dhcp_lease *lease) {
  if (length < (ssize_t)(sizeof *packet - sizeof packet->options) || packet->op != 2 || packet->xid != xid ||
      packet->magic != htonl(0x63825363))
    return 0;
  int type = 0;
  memset(lease, 0, sizeof *lease);
  lease->address.s_addr = packet->yiaddr;
  const uint8_t *option = packet->options;
  const uint8_t *end = (const uint8_t *)packet + length;
  while (option < end && *option != 255) {
    if (*option == 0) {
      option++;
      continue;
    }
    if (option + 2 > end || option + 2 + option[1] > end) break;
    uint8_t code = option[0], size = option[1];
    const uint8_t *value = option + 2;
    if (code == 53 && size == 1) type = value[0];
    if (code == 1 && size == 4) memcpy(&lease->mask, value, 4);
    if (code == 3 && size >= 4) memcpy(&lease->router, value, 4);
    if (code == 54 && size == 4) memcpy(&lease->server, value, 4);
    if (code == 6)
      for (int i = 0; i + 4 <= size && lease->dns_count < MAX_DNS; i += 4)
        memcpy(&lease->dns[lease->dns_count++], value + i, 4);
    option += 2 + size;
  }
  return type;
}

static int dhcp_exchange(int sock, struct dhcp_packet *out, size_t length, uint32_t xid, int wanted,
                         struct dhcp_lease *lease) {
  struct sockaddr_in broadcast = {.sin_family = AF_INET, .sin_port = htons(67)};
  broadcast.sin_addr.s_addr = INADDR_BROADCAST;
  for (int attempt = 0; attempt < 10; attempt++) {
    /* A first request can go out before the link is up: ask again soon, then every second. */
    int wait_ms = attempt < 3 ? 200 << attempt : 1000;
    struct timeval timeout = {.tv_sec = wait_ms / 1000, .tv_usec = (wait_ms % 1000) * 1000};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (sendto(sock, out, length, 0, (struct sockaddr *)&broadcast, sizeof broadcast) < 0) {
      usleep(250000);
      continue;
    }
    struct dhcp_packet reply;
    ssize_t got;
    while ((got = recv(sock, &reply, sizeof reply, 0)) >= 0) {
      int type = dhcp_parse(&reply, got, xid, lease);
      if (type == wanted) return 0;
      if (type == 6) return -1; /* NAK */
    }
  }
  return -1;
}

static int dhcp(const char *name, struct dhcp_lease *lease) {
  int control = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq request;
  memset(&request, 0, sizeof request);
  strncpy(request.ifr_name, name, IFNAMSIZ - 1);
  if (set_flags_up(control, name) != 0 || ioctl(control, SIOCGIFHWADDR, &request) != 0) {
    close(control);
    return -1;
  }
  close(control);
  uint8_t mac[6];
  memcpy(mac, request.ifr_hwaddr.sa_data, 6);

  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int on = 1;
  setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  setsockopt(sock, SOL_SOCKET, SO_BROADCAST, &on, sizeof on);
  setsockopt(sock, SOL_SOCKET, SO_BINDTODEVICE, name, strlen(name) + 1);
  struct sockaddr_in client = {.sin_family = AF_INET, .sin_port = htons(68)};
  if (bind(sock, (struct sockaddr *)&client, sizeof client) != 0) {
    close(sock);
    return -1;
  }
  uint32_t xid = (uint32_t)mac[2] << 24 | (uint32_t)mac[3] << 16 | (uint32_t)mac[4] << 8 | mac[5];
  xid ^= (uint32_t)time(NULL);
  struct dhcp_packet packet;
  struct dhcp_lease offer;
  int result = -1;
  size_t length = dhcp_request(&packet, mac, xid, 1, NULL);
  if (dhcp_exchange(sock, &packet, length, xid, 2, &offer) == 0) {
    length = dhcp_request(&packet, mac, xid, 3, &offer);
    result = dhcp_exchange(sock, &packet, length, xid, 5, lease);
    if (result == 0 && lease->server.s_addr == 0) lease->server = offer.server;
  }
  close(sock);
  return result;
}

static void bring_up_network(const char *mode, const char *name, const char *address, const char *gateway,
                             struct in_addr *dns, int dns_count) {
  struct in_addr loopback, loopback_mask, none = {0};
  inet_aton("127.0.0.1", &loopback);
  inet_aton("255.0.0.0", &loopback_mask);
  configure("lo", loopback, loopback_mask, none);
  if (strcmp(mode, "none") == 0) return;

  /* The driver was just loaded: its interface appears a moment later. */
  for (int waited = 0; !interface_exists(name) && waited < 100; waited++) usleep(50000);
  if (!interface_exists(name)) {
    say("%s: no such network interface (is its driver among the modules?)", name);
    return;
  }
  if (strcmp(mode, "static") == 0) {
    char copy[64];
    snprintf(copy, sizeof copy, "%s", address);
    char *slash = strchr(copy, '/');
    int prefix = slash ? atoi(slash + 1) : 24;
    if (slash) *slash = '\0';
    struct in_addr host, via = {0};
    if (!inet_aton(copy, &host) || (gateway && !inet_aton(gateway, &via))) {
      say("%s: bad static address %s %s", name, address, gateway ? gateway : "");
      return;
    }
    configure(name, host, prefix_mask(prefix), via);
    write_resolv_conf(dns, dns_count);
    say("%s %s (static)", name, address);
    return;
  }
  struct dhcp_lease lease;
  if (dhcp(name, &lease) != 0) {
    say("%s: no DHCP answer", name);
    return;
  }
  if (lease.mask.s_addr == 0) lease.mask = prefix_mask(24);
  configure(name, lease.address, lease.mask, lease.router);
  write_resolv_conf(lease.dns, lease.dns_count);
  char address_text[16], router_text[16];
  snprintf(address_text, sizeof address_text, "%s", inet_ntoa(lease.address));
  snprintf(router_text, sizeof router_text, "%s", inet_ntoa(lease.router));
  say("%s %s via %s (dhcp)", name, address_text, router_text);
}

static char *trim(char *text) {
  while (*text == ' ' || *text == '\t') text++;
  size_t length = strlen(text);
  while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r' || text[length - 1] == ' '))
    text[--length] = '\0';
  return text;
}

int main(void) {
  mount_or_warn("devtmpfs", "/dev", "devtmpfs", MS_NOSUID);
  mount_or_warn("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mount_or_warn("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  /* The kernel may have started us without a console when /dev was still empty. */
  int console = open("/dev/console", O_RDWR | O_CLOEXEC);
  if (console >= 0) {
    dup2(console, 0), dup2(console, 1), dup2(console, 2);
    close(console);
  }

  FILE *config = fopen(CONFIG_FILE, "r");
  if (!config) give_up("%s: %s", CONFIG_FILE, strerror(errno));
  static char lines[256][512];
  int count = 0;
  while (count < 256 && fgets(lines[count], sizeof lines[count], config)) count++;
  fclose(config);

  char *program = NULL;
  char *args[MAX_ARGS + 2];
  int arg_count = 1;
  const char *net_mode = "none", *net_name = "eth0", *net_address = NULL, *net_gateway = NULL;
  struct in_addr dns[MAX_DNS];
  int dns_count = 0;
  for (int i = 0; i < count; i++) {
    char *line = trim(lines[i]);
    char *value = strchr(line, ' ');
    if (*line == '\0' || *line == '#' || !value) continue;
    *value++ = '\0';
    value = trim(value);
    if (strcmp(line, "hostname") == 0) {
      if (sethostname(value, strlen(value)) != 0) say("hostname %s: %s", value, strerror(errno));
    } else if (strcmp(line, "module") == 0) {
      load_module(value);
    } else if (strcmp(line, "net") == 0) {
      net_mode = strtok(value, " ");
      net_name = strtok(NULL, " ");
      net_address = strtok(NULL, " ");
      net_gateway = strtok(NULL, " ");
      if (!net_mode) net_mode = "none";
      if (!net_name) net_name = "eth0";
    } else if (strcmp(line, "dns") == 0) {
      if (dns_count < MAX_DNS && inet_aton(value, &dns[dns_count])) dns_count++;
    } else if (strcmp(line, "env") == 0) {
      char *equals = strchr(value, '=');
      if (equals) {
        *equals = '\0';
        setenv(value, equals + 1, 0);
      }
    } else if (strcmp(line, "exec") == 0) {
      program = value;
    } else if (strcmp(line, "arg") == 0 && arg_count <= MAX_ARGS) {
      args[arg_count++] = value;
    } else {
      say("%s: unknown directive \"%s\"", CONFIG_FILE, line);
    }
  }
  if (!program) give_up("%s names no program (exec PATH)", CONFIG_FILE);
  args[0] = program;
  args[arg_count] = NULL;
  if (!getenv("PATH")) setenv("PATH", "/usr/bin:/bin", 1);
  if (!getenv("HOME")) setenv("HOME", "/", 1);

  bring_up_network(net_mode, net_name, net_address, net_gateway, dns, dns_count);
  /* The reboot key (Ctrl-Alt-Del) becomes SIGINT to PID 1: the application's cue to stop. */
  reboot(LINUX_REBOOT_CMD_CAD_OFF);
  say("exec %s", program);
  execv(program, args);
  give_up("exec %s: %s", program, strerror(errno));
  return 1;
}
