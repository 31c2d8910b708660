/* Win32 backend: a socket library's writes (hiredis). Windows has no SIGPIPE: a write to a
 * closed socket fails with WSAECONNRESET. */
#include <winsock2.h>

#include "../platform.h"

int mp_plat_sock_send(uint64_t sock, const void *buf, size_t len, size_t *sent) {
  int n = send((SOCKET)sock, buf, len > 0x7fffffff ? 0x7fffffff : (int)len, 0);
  if (n != SOCKET_ERROR) {
    *sent = (size_t)n;
    return 0;
  }
  int err = WSAGetLastError();
  if (err == WSAETIMEDOUT || err == WSAEWOULDBLOCK)
    return mp__os_error_code(MP_ETIMEDOUT, err, "send");
  if (err == WSAECONNRESET || err == WSAECONNABORTED || err == WSAENOTCONN || err == WSAESHUTDOWN)
    return mp__os_error_code(MP_EBROKEN, err, "send");
  return mp__os_error_code(MP_EOS, err, "send");
}

int mp_plat_sigpipe_hold(void) { return 0; }

void mp_plat_sigpipe_release(int token) { (void)token; }
