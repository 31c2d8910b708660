/* Small helpers shared by the POSIX backend's child engine files. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>

#include "../platform.h"
#include "util.h"

int mp__errno_code(int e) {
  switch (e) {
  case ENOENT:
  case ENOTDIR: return MP_ENOENT;
  case EACCES:
  case EPERM: return MP_EPERM;
  case ENOMEM: return MP_ENOMEM;
  default: return MP_EOS;
  }
}

int mp__service_thread(void *(*fn)(void *), void *arg, const char *what) {
  pthread_t t;
  pthread_attr_t attr;
  sigset_t all, old;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&t, &attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return rc == 0 ? 0 : mp__os_error_code(MP_EOS, rc, what);
}
