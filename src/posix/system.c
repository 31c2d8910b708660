/* POSIX backend: clock, randomness, identity, OS error text. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../platform.h"

uint64_t mp_plat_monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int mp_plat_random_bytes(void *buf, size_t len) {
  unsigned char *p = buf;
  while (len > 0) {
    ssize_t n = getrandom(p, len, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return mp__os_error("getrandom");
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int64_t mp_plat_getpid(void) { return (int64_t)getpid(); }

int64_t mp_plat_getppid(void) { return (int64_t)getppid(); }

long mp_plat_last_os_error(void) { return errno; }

void mp_plat_os_error_text(long err, char *buf, size_t size) {
  if (size == 0)
    return;
  /* GNU strerror_r may return a static string instead of filling buf. */
  const char *s = strerror_r((int)err, buf, size);
  if (s != buf) {
    strncpy(buf, s, size - 1);
    buf[size - 1] = '\0';
  }
}

static pthread_mutex_t global_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t global_once = PTHREAD_ONCE_INIT;

/* Held across fork so that the child's copy is never locked by a thread it does not have. */
static void global_prepare(void) { pthread_mutex_lock(&global_mu); }
static void global_after(void) { pthread_mutex_unlock(&global_mu); }
static void global_init(void) { pthread_atfork(global_prepare, global_after, global_after); }

void mp_plat_global_lock(void) {
  pthread_once(&global_once, global_init);
  pthread_mutex_lock(&global_mu);
}

void mp_plat_global_unlock(void) { pthread_mutex_unlock(&global_mu); }

void mp_plat_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}
