/* Win32 backend: TCP sockets for the manager. Sockets are overlapped and non-inheritable
 * and become ordinary channels: ReadFile/WriteFile with an OVERLAPPED work on a socket
 * handle from the base provider, so the framing code is the same as for pipes. A listener
 * waits on its FD_ACCEPT event and a wake-up event together. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../platform.h"
#include "chan.h"

struct mp_plat_listener {
  SOCKET s;
  HANDLE accept_event, wake_event;
  int port;
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
  if (rc == 0) {
    l->accept_event = CreateEventW(NULL, FALSE, FALSE, NULL);
    l->wake_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!l->accept_event || !l->wake_event)
      rc = mp__os_error("CreateEventW");
    else if (WSAEventSelect(l->s, l->accept_event, FD_ACCEPT) != 0)
      rc = sock_error("WSAEventSelect");
  }
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
  WSAEventSelect(s, NULL, 0); /* an accepted socket inherits the listener's selection */
  ioctlsocket(s, FIONBIO, &off);
  SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
  int rc = mp_plat_chan_wrap(c, (mp_plat_handle)s, MP_CHAN_READ | MP_CHAN_WRITE);
  if (rc == 0)
    (*c)->is_socket = 1;
  return rc;
}

int mp_plat_tcp_accept(mp_plat_listener *l, mp_plat_chan **c) {
  for (;;) {
    HANDLE hs[2] = {l->wake_event, l->accept_event};
    DWORD w = WaitForMultipleObjects(2, hs, FALSE, INFINITE);
    if (w == WAIT_OBJECT_0)
      return mp_set_error(MP_ECANCELED, "the listener was woken to stop");
    if (w != WAIT_OBJECT_0 + 1)
      return mp__os_error("WaitForMultipleObjects (accept)");
    SOCKET s = accept(l->s, NULL, NULL);
    if (s == INVALID_SOCKET) {
      int e = WSAGetLastError();
      if (e == WSAEWOULDBLOCK || e == WSAECONNRESET || e == WSAEINTR)
        continue; /* the event fired for a connection that is gone again */
      return mp__os_error_code(MP_EOS, e, "accept");
    }
    /* FD_ACCEPT is re-enabled by accept; more pending connections set the event again. */
    return to_chan(s, c);
  }
}

void mp_plat_tcp_wake(mp_plat_listener *l) { SetEvent(l->wake_event); }

void mp_plat_tcp_close(mp_plat_listener *l) {
  if (l == NULL)
    return;
  if (l->s != INVALID_SOCKET)
    closesocket(l->s);
  if (l->accept_event)
    CloseHandle(l->accept_event);
  if (l->wake_event)
    CloseHandle(l->wake_event);
  free(l);
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
