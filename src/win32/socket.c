/* Win32 backend: TCP sockets for the manager. Sockets are overlapped and non-inheritable
 * and become ordinary channels: ReadFile/WriteFile with an OVERLAPPED work on a socket
 * handle from the base provider, so the framing code is the same as for pipes. The
 * listener is non-blocking (accepted sockets inherit that through the handshake stage)
 * and WSAPoll watches it, the handshaking sockets and a wake-up: a UDP socket bound to
 * 127.0.0.1 that mp_plat_tcp_wake sends a datagram to, since WSAPoll waits on sockets
 * only. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../platform.h"
#include "chan.h"

struct mp_plat_listener {
  SOCKET s;
  SOCKET wake; /* UDP, bound to 127.0.0.1, non-blocking */
  struct sockaddr_in wake_addr;
  int port;
};

struct mp_plat_nbsock {
  SOCKET s;
};

static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static int wsa_rc;

static BOOL CALLBACK wsa_start(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  WSADATA d;
  int e = WSAStartup(MAKEWORD(2, 2), &d);
  wsa_rc = e ? mp__os_error_code(MP_EOS, e, "WSAStartup") : 0;
  return TRUE;
}

static int wsa_init(void) {
  InitOnceExecuteOnce(&wsa_once, wsa_start, NULL, NULL);
  return wsa_rc;
}

static int sock_error(const char *what) {
  return mp__os_error_code(MP_EOS, WSAGetLastError(), what);
}

void mp__win_sock_close(HANDLE h) { closesocket((SOCKET)h); }

static int resolve(const char *host, int port, struct sockaddr_in *sa) {
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((u_short)port);
  if (host[0] == '\0')
    return 0; /* INADDR_ANY */
  if (inet_pton(AF_INET, host, &sa->sin_addr) == 1)
    return 0;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0 || res == NULL)
    return mp_set_error(MP_ENOENT, "cannot resolve host '%s' (error %d)", host, rc);
  sa->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
  freeaddrinfo(res);
  return 0;
}

static SOCKET new_socket(void) {
  return WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                    WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
}

/* The wake-up: a UDP socket on 127.0.0.1 that datagrams to itself make readable. */
static int wake_socket(mp_plat_listener *l) {
  l->wake = WSASocketW(AF_INET, SOCK_DGRAM, IPPROTO_UDP, NULL, 0, WSA_FLAG_NO_HANDLE_INHERIT);
  if (l->wake == INVALID_SOCKET)
    return sock_error("WSASocketW (wake-up)");
  memset(&l->wake_addr, 0, sizeof l->wake_addr);
  l->wake_addr.sin_family = AF_INET;
  l->wake_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int len = sizeof l->wake_addr;
  u_long on = 1;
  if (bind(l->wake, (struct sockaddr *)&l->wake_addr, sizeof l->wake_addr) != 0 ||
      getsockname(l->wake, (struct sockaddr *)&l->wake_addr, &len) != 0 ||
      ioctlsocket(l->wake, FIONBIO, &on) != 0)
    return sock_error("binding the wake-up socket");
  return 0;
}

int mp_plat_tcp_listen(mp_plat_listener **out, const char *host, int port, int backlog) {
  struct sockaddr_in sa;
  int rc = wsa_init();
  if (rc == 0)
    rc = resolve(host, port, &sa);
  if (rc < 0)
    return rc;
  mp_plat_listener *l = calloc(1, sizeof *l);
  if (l == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory allocating a listener");
  l->wake = INVALID_SOCKET;
  l->s = new_socket();
  if (l->s == INVALID_SOCKET) {
    free(l);
    return sock_error("WSASocketW");
  }
  /* Exclusive use: on Windows SO_REUSEADDR would let another program steal the port. */
  BOOL one = TRUE;
  setsockopt(l->s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof one);
  char what[160];
  snprintf(what, sizeof what, "bind to %s:%d", host[0] ? host : "0.0.0.0", port);
  int salen = sizeof sa;
  if (bind(l->s, (struct sockaddr *)&sa, sizeof sa) != 0)
    rc = sock_error(what);
  else if (listen(l->s, backlog) != 0)
    rc = sock_error("listen");
  else if (getsockname(l->s, (struct sockaddr *)&sa, &salen) != 0)
    rc = sock_error("getsockname");
  u_long on = 1;
  if (rc == 0 && ioctlsocket(l->s, FIONBIO, &on) != 0)
    rc = sock_error("ioctlsocket(FIONBIO) on the listener");
  if (rc == 0)
    rc = wake_socket(l);
  if (rc < 0) {
    mp_plat_tcp_close(l);
    return rc;
  }
  l->port = ntohs(sa.sin_port);
  *out = l;
  return 0;
}

int mp_plat_tcp_port(const mp_plat_listener *l) { return l->port; }

/* Makes an accepted or connected socket a blocking, non-inheritable channel. */
static int to_chan(SOCKET s, mp_plat_chan **c) {
  u_long off = 0;
  BOOL one = TRUE;
  ioctlsocket(s, FIONBIO, &off);
  SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
  int rc = mp_plat_chan_wrap(c, (mp_plat_handle)s, MP_CHAN_READ | MP_CHAN_WRITE);
  if (rc == 0)
    (*c)->is_socket = 1;
  return rc;
}

int mp_plat_tcp_accept_nb(mp_plat_listener *l, mp_plat_nbsock **s, uint32_t *peer) {
  for (;;) {
    struct sockaddr_in sa;
    int len = sizeof sa;
    SOCKET a = accept(l->s, (struct sockaddr *)&sa, &len);
    if (a != INVALID_SOCKET) {
      SetHandleInformation((HANDLE)a, HANDLE_FLAG_INHERIT, 0);
      *s = malloc(sizeof **s);
      if (*s == NULL) {
        closesocket(a);
        return mp_set_error(MP_ENOMEM, "out of memory accepting a connection");
      }
      (*s)->s = a; /* non-blocking, as the listener */
      *peer = sa.sin_family == AF_INET ? ntohl(sa.sin_addr.s_addr) : 0;
      return 0;
    }
    int e = WSAGetLastError();
    if (e == WSAECONNRESET || e == WSAEINTR)
      continue; /* a connection that is gone again */
    if (e == WSAEWOULDBLOCK)
      return mp_set_error(MP_ETIMEDOUT, "no connection is waiting to be accepted");
    if (e == WSAEMFILE || e == WSAENOBUFS)
      return mp__os_error_code(MP_ENOMEM, e, "accept");
    return mp__os_error_code(MP_EOS, e, "accept");
  }
}

void mp_plat_tcp_wake(mp_plat_listener *l) {
  char b = 1;
  sendto(l->wake, &b, 1, 0, (const struct sockaddr *)&l->wake_addr, sizeof l->wake_addr);
}

void mp_plat_tcp_close(mp_plat_listener *l) {
  if (l == NULL)
    return;
  if (l->s != INVALID_SOCKET)
    closesocket(l->s);
  if (l->wake != INVALID_SOCKET)
    closesocket(l->wake);
  free(l);
}

int mp_plat_tcp_poll(mp_plat_listener *l, int listen, mp_plat_nbsock *const *socks, size_t n,
                     unsigned char *ready, int *accept_ready, int *woken, int timeout_ms) {
  WSAPOLLFD local[64], *p = n + 2 <= 64 ? local : malloc((n + 2) * sizeof *p);
  if (p == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory polling %llu sockets", (unsigned long long)n);
  size_t k = 0;
  p[k++] = (WSAPOLLFD){l->wake, POLLRDNORM, 0};
  if (listen)
    p[k++] = (WSAPOLLFD){l->s, POLLRDNORM, 0};
  size_t first = k;
  for (size_t i = 0; i < n; i++)
    p[k++] = (WSAPOLLFD){socks[i]->s, POLLRDNORM, 0};
  int rc = WSAPoll(p, (ULONG)k, timeout_ms < 0 ? -1 : timeout_ms);
  *woken = *accept_ready = 0;
  for (size_t i = 0; i < n; i++)
    ready[i] = rc > 0 && (p[first + i].revents & (POLLRDNORM | POLLHUP | POLLERR)) != 0;
  if (rc > 0) {
    *woken = p[0].revents != 0;
    *accept_ready = listen && (p[1].revents & (POLLRDNORM | POLLERR)) != 0;
  }
  if (p != local)
    free(p);
  if (rc < 0)
    return sock_error("WSAPoll (manager)");
  char drain[16];
  while (*woken && recv(l->wake, drain, sizeof drain, 0) > 0) {
  }
  return 0;
}

int mp_plat_nbsock_recv(mp_plat_nbsock *s, void *buf, size_t len, size_t *n) {
  int r = recv(s->s, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
  if (r > 0) {
    *n = (size_t)r;
    return 0;
  }
  if (r == 0)
    return mp_set_error(MP_EEOF, "the peer closed the connection");
  int e = WSAGetLastError();
  if (e == WSAEWOULDBLOCK)
    return mp_set_error(MP_ETIMEDOUT, "nothing to read yet");
  return mp__os_error_code(MP_EEOF, e, "recv (the peer is gone)");
}

int mp_plat_nbsock_send(mp_plat_nbsock *s, const void *buf, size_t len) {
  int r = send(s->s, buf, (int)len, 0);
  if (r == (int)len)
    return 0;
  return mp_set_error(MP_EBROKEN, "the peer is gone or does not read");
}

int mp_plat_nbsock_to_chan(mp_plat_nbsock *s, mp_plat_chan **c) {
  SOCKET a = s->s;
  free(s);
  return to_chan(a, c);
}

void mp_plat_nbsock_close(mp_plat_nbsock *s) {
  if (s == NULL)
    return;
  closesocket(s->s);
  free(s);
}

static int finish_connect(SOCKET s, int timeout_ms, const char *what) {
  fd_set w, e;
  FD_ZERO(&w);
  FD_ZERO(&e);
  FD_SET(s, &w);
  FD_SET(s, &e);
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  int n = select(0, NULL, &w, &e, timeout_ms < 0 ? NULL : &tv);
  if (n == 0)
    return mp_set_error(MP_ETIMEDOUT, "%s: no answer within %d ms", what, timeout_ms);
  if (n < 0)
    return sock_error(what);
  int err = 0, len = sizeof err;
  getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&err, &len);
  if (FD_ISSET(s, &e) || err != 0)
    return mp__os_error_code(MP_EOS, err ? err : WSAECONNREFUSED, what);
  return 0;
}

int mp_plat_tcp_connect(const char *host, int port, int timeout_ms, mp_plat_chan **c) {
  struct sockaddr_in sa;
  int rc = wsa_init();
  if (rc == 0)
    rc = resolve(host, port, &sa);
  if (rc < 0)
    return rc;
  SOCKET s = new_socket();
  if (s == INVALID_SOCKET)
    return sock_error("WSASocketW");
  u_long on = 1;
  ioctlsocket(s, FIONBIO, &on);
  char what[160];
  snprintf(what, sizeof what, "connect to %s:%d", host, port);
  if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int e = WSAGetLastError();
    rc = e == WSAEWOULDBLOCK ? finish_connect(s, timeout_ms, what)
                             : mp__os_error_code(MP_EOS, e, what);
  }
  if (rc < 0) {
    closesocket(s);
    return rc;
  }
  return to_chan(s, c);
}

void mp_plat_tcp_shutdown(mp_plat_chan *c) {
  shutdown((SOCKET)c->h, SD_BOTH);
  CancelIoEx(c->h, NULL); /* a read already waiting ends now */
}

int mp_plat_tcp_peer_gone(mp_plat_chan *c) {
  SOCKET s = (SOCKET)c->h;
  fd_set r;
  FD_ZERO(&r);
  FD_SET(s, &r);
  struct timeval zero = {0, 0};
  if (select(0, &r, NULL, NULL, &zero) <= 0)
    return 0;
  char b;
  int n = recv(s, &b, 1, MSG_PEEK);
  return n <= 0;
}
