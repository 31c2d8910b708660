/* POSIX backend: a socket library's writes (hiredis), never raising SIGPIPE. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

#include "../platform.h"

int mp_plat_sock_send(uint64_t sock, const void *buf, size_t len, size_t *sent) {
  for (;;) {
    ssize_t n = send((int)sock, buf, len, MSG_NOSIGNAL);
    if (n >= 0) {
      *sent = (size_t)n;
      return 0;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return mp__os_error_code(MP_ETIMEDOUT, errno, "send");
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
      return mp__os_error_code(MP_EBROKEN, errno, "send");
    return mp__os_error("send");
  }
}

enum { WAS_BLOCKED = 1, WAS_PENDING = 2 };

int mp_plat_sigpipe_hold(void) {
  sigset_t set, old, pending;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  sigpending(&pending);
  return (sigismember(&old, SIGPIPE) ? WAS_BLOCKED : 0) |
         (sigismember(&pending, SIGPIPE) ? WAS_PENDING : 0);
}

void mp_plat_sigpipe_release(int token) {
  sigset_t set, pending;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  /* A SIGPIPE pending now and not before was raised by a write in between: consume it. */
  if (!(token & WAS_PENDING) && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
    const struct timespec zero = {0, 0};
    while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  if (!(token & WAS_BLOCKED))
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
