/* POSIX backend: keeps SIGPIPE from a socket library's writes away from the process. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "../platform.h"

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
