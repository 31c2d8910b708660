/* POSIX backend: TCP sockets for the manager. Every socket is close-on-exec. The listener
 * is non-blocking and paired with a self-pipe, so mp_plat_tcp_wake can wake the thread
 * polling it without closing a descriptor that thread uses. Accepted sockets stay
 * non-blocking through the handshake stage (mp_plat_nbsock) and become blocking channels
 * after it (the channel code polls before timed reads). */
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
#include "features.h"

struct mp_plat_listener {
  int fd;
  int wake[2];
  int port;
};

struct mp_plat_nbsock {
  int fd;
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
  else if (fcntl(l->fd, F_SETFL, fcntl(l->fd, F_GETFL) | O_NONBLOCK) < 0)
    rc = mp__os_error("fcntl(O_NONBLOCK) on the listener");
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

int mp_plat_tcp_accept_nb(mp_plat_listener *l, mp_plat_nbsock **s, uint32_t *peer) {
  for (;;) {
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = accept4(l->fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      *s = malloc(sizeof **s);
      if (*s == NULL) {
        close(fd);
        return mp_set_error(MP_ENOMEM, "out of memory accepting a connection");
      }
      (*s)->fd = fd;
      *peer = sa.sin_family == AF_INET ? ntohl(sa.sin_addr.s_addr) : 0;
      tune(fd);
      return 0;
    }
    /* A connection may be gone again before accept: take the next. */
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return mp_set_error(MP_ETIMEDOUT, "no connection is waiting to be accepted");
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
      return mp__os_error_code(MP_ENOMEM, errno, "accept");
    return mp__os_error("accept");
  }
}

int mp_plat_tcp_poll(mp_plat_listener *l, int listen, mp_plat_nbsock *const *socks, size_t n,
                     unsigned char *ready, int *accept_ready, int *woken, int timeout_ms) {
  struct pollfd local[64], *p = n + 2 <= 64 ? local : malloc((n + 2) * sizeof *p);
  if (p == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory polling %zu sockets", n);
  p[0] = (struct pollfd){.fd = l->wake[0], .events = POLLIN};
  p[1] = (struct pollfd){.fd = listen ? l->fd : -1, .events = POLLIN}; /* -1: ignored */
  for (size_t i = 0; i < n; i++)
    p[i + 2] = (struct pollfd){.fd = socks[i]->fd, .events = POLLIN};
  int rc = poll(p, (nfds_t)(n + 2), timeout_ms);
  *woken = *accept_ready = 0;
  if (rc < 0 && errno != EINTR)
    rc = mp__os_error("poll (manager)");
  else if (rc > 0) {
    *woken = p[0].revents != 0;
    *accept_ready = (p[1].revents & (POLLIN | POLLERR)) != 0;
    for (size_t i = 0; i < n; i++)
      ready[i] = (p[i + 2].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    rc = 0;
  } else {
    for (size_t i = 0; i < n; i++)
      ready[i] = 0;
    rc = 0;
  }
  char drain[64];
  while (*woken && read(l->wake[0], drain, sizeof drain) > 0) {
  }
  if (p != local)
    free(p);
  return rc;
}

int mp_plat_nbsock_recv(mp_plat_nbsock *s, void *buf, size_t len, size_t *n) {
  for (;;) {
    ssize_t r = recv(s->fd, buf, len, 0);
    if (r > 0) {
      *n = (size_t)r;
      return 0;
    }
    if (r == 0)
      return mp_set_error(MP_EEOF, "the peer closed the connection");
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return mp_set_error(MP_ETIMEDOUT, "nothing to read yet");
    return mp__os_error_code(MP_EEOF, errno, "recv (the peer is gone)");
  }
}

int mp_plat_nbsock_send(mp_plat_nbsock *s, const void *buf, size_t len) {
  ssize_t r;
  while ((r = send(s->fd, buf, len, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  if (r == (ssize_t)len)
    return 0;
  return mp_set_error(MP_EBROKEN, "the peer is gone or does not read");
}

int mp_plat_nbsock_to_chan(mp_plat_nbsock *s, mp_plat_chan **c) {
  int fd = s->fd;
  free(s);
#if MP_LINUX
  /* Acknowledge the handshake's last frame now: a client with Nagle's algorithm on (every
   * Python client) holds its first request back until that ACK, which the kernel would
   * otherwise delay by up to 40 ms since the server has nothing to answer it with. */
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
#endif
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
    int rc = mp__os_error("fcntl(F_SETFL)");
    close(fd);
    return rc;
  }
  return mp_plat_chan_wrap(c, (mp_plat_handle)fd, MP_CHAN_READ | MP_CHAN_WRITE);
}

void mp_plat_nbsock_close(mp_plat_nbsock *s) {
  if (s == NULL)
    return;
  close(s->fd);
  free(s);
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
