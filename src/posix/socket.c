/* POSIX backend: TCP sockets for the manager. Sockets are close-on-exec and blocking (the
 * channel code polls before timed reads); a listener pairs its socket with a self-pipe so
 * that mp_plat_tcp_wake can end a blocked accept without closing a descriptor another
 * thread is using. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../platform.h"

struct mp_plat_listener {
  int fd;
  int wake[2];
  int port;
};

/* Resolves host (numeric or a name; "" = all interfaces) to an IPv4 address. */
static int resolve(const char *host, int port, struct sockaddr_in *sa) {
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  if (host[0] == '\0') {
    sa->sin_addr.s_addr = htonl(INADDR_ANY);
    return 0;
  }
  if (inet_pton(AF_INET, host, &sa->sin_addr) == 1)
    return 0;
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0 || res == NULL)
    return mp_set_error(MP_ENOENT, "cannot resolve host '%s': %s", host, gai_strerror(rc));
  sa->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
  freeaddrinfo(res);
  return 0;
}

int mp_plat_tcp_listen(mp_plat_listener **out, const char *host, int port, int backlog) {
  struct sockaddr_in sa;
  int rc = resolve(host, port, &sa);
  if (rc < 0)
    return rc;
  mp_plat_listener *l = calloc(1, sizeof *l);
  if (l == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory allocating a listener");
  l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l->fd < 0) {
    free(l);
    return mp__os_error("socket(AF_INET, SOCK_STREAM)");
  }
  int one = 1;
  setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* as Python's Listener */
  char what[160];
  snprintf(what, sizeof what, "bind to %s:%d", host[0] ? host : "0.0.0.0", port);
  if (bind(l->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    rc = mp__os_error(what);
  else if (listen(l->fd, backlog) < 0)
    rc = mp__os_error("listen");
  else if (pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) < 0)
    rc = mp__os_error("pipe2 (listener wake-up)");
  socklen_t salen = sizeof sa;
  if (rc == 0 && getsockname(l->fd, (struct sockaddr *)&sa, &salen) < 0)
    rc = mp__os_error("getsockname");
  if (rc < 0) {
    close(l->fd);
    free(l);
    return rc;
  }
  l->port = ntohs(sa.sin_port);
  *out = l;
  return 0;
}

int mp_plat_tcp_port(const mp_plat_listener *l) { return l->port; }

static void tune(int fd) {
  int one = 1; /* request/reply traffic: do not wait to coalesce small writes */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int mp_plat_tcp_accept(mp_plat_listener *l, mp_plat_chan **c) {
  for (;;) {
    struct pollfd p[2] = {{.fd = l->fd, .events = POLLIN}, {.fd = l->wake[0], .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      return mp__os_error("poll (accept)");
    }
    if (p[1].revents)
      return mp_set_error(MP_ECANCELED, "the listener was woken to stop");
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      /* The connection may be gone again before accept: keep waiting. */
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN || errno == EPROTO)
        continue;
      return mp__os_error("accept");
    }
    tune(fd);
    return mp_plat_chan_wrap(c, (mp_plat_handle)fd, MP_CHAN_READ | MP_CHAN_WRITE);
  }
}

void mp_plat_tcp_wake(mp_plat_listener *l) {
  char b = 1;
  while (write(l->wake[1], &b, 1) < 0 && errno == EINTR) {
  }
}

void mp_plat_tcp_close(mp_plat_listener *l) {
  if (l == NULL)
    return;
  close(l->fd);
  close(l->wake[0]);
  close(l->wake[1]);
  free(l);
}

/* Waits for a non-blocking connect to finish. */
static int finish_connect(int fd, int timeout_ms, const char *what) {
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  int n;
  while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
  }
  if (n == 0)
    return mp_set_error(MP_ETIMEDOUT, "%s: no answer within %d ms", what, timeout_ms);
  int err = 0;
  socklen_t len = sizeof err;
  if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    return mp__os_error(what);
  if (err != 0)
    return mp__os_error_code(MP_EOS, err, what);
  return 0;
}

int mp_plat_tcp_connect(const char *host, int port, int timeout_ms, mp_plat_chan **c) {
  struct sockaddr_in sa;
  int rc = resolve(host, port, &sa);
  if (rc < 0)
    return rc;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return mp__os_error("socket(AF_INET, SOCK_STREAM)");
  char what[160];
  snprintf(what, sizeof what, "connect to %s:%d", host, port);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    rc = errno == EINPROGRESS ? finish_connect(fd, timeout_ms, what) : mp__os_error(what);
  /* Back to blocking: the channel polls before timed reads and writes whole messages. */
  if (rc == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
    rc = mp__os_error("fcntl(F_SETFL)");
  if (rc < 0) {
    close(fd);
    return rc;
  }
  tune(fd);
  return mp_plat_chan_wrap(c, (mp_plat_handle)fd, MP_CHAN_READ | MP_CHAN_WRITE);
}

void mp_plat_tcp_shutdown(mp_plat_chan *c) { shutdown((int)mp_plat_chan_handle(c), SHUT_RDWR); }

int mp_plat_tcp_peer_gone(mp_plat_chan *c) {
  /* One non-blocking peek: 0 bytes is an orderly close; data or EAGAIN mean it is there. */
  char b;
  ssize_t n = recv((int)mp_plat_chan_handle(c), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}
