/* POSIX backend: a mutex and a CLOCK_MONOTONIC condition variable held by value. */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "../platform.h"

_Static_assert(sizeof(pthread_mutex_t) <= sizeof(mp_plat_mutex), "mp_plat_mutex too small");
_Static_assert(sizeof(pthread_cond_t) <= sizeof(mp_plat_cond), "mp_plat_cond too small");

#define MUTEX(m) ((pthread_mutex_t *)(void *)(m)->bytes)
#define COND(c) ((pthread_cond_t *)(void *)(c)->bytes)

int mp_plat_mutex_init(mp_plat_mutex *m) {
  int err = pthread_mutex_init(MUTEX(m), NULL);
  return err == 0 ? 0 : mp__os_error_code(MP_EOS, err, "pthread_mutex_init");
}

void mp_plat_mutex_destroy(mp_plat_mutex *m) { pthread_mutex_destroy(MUTEX(m)); }

void mp_plat_mutex_lock(mp_plat_mutex *m) { pthread_mutex_lock(MUTEX(m)); }

void mp_plat_mutex_unlock(mp_plat_mutex *m) { pthread_mutex_unlock(MUTEX(m)); }

int mp_plat_cond_init(mp_plat_cond *c) {
  /* The monotonic clock, so that setting the wall clock never stretches a timeout. */
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int err = pthread_cond_init(COND(c), &attr);
  pthread_condattr_destroy(&attr);
  return err == 0 ? 0 : mp__os_error_code(MP_EOS, err, "pthread_cond_init");
}

void mp_plat_cond_destroy(mp_plat_cond *c) { pthread_cond_destroy(COND(c)); }

int mp_plat_cond_wait(mp_plat_cond *c, mp_plat_mutex *m, int64_t deadline_ns) {
  if (deadline_ns < 0) {
    pthread_cond_wait(COND(c), MUTEX(m));
    return 0;
  }
  struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000),
                        .tv_nsec = (long)(deadline_ns % 1000000000)};
  int err = pthread_cond_timedwait(COND(c), MUTEX(m), &ts);
  return err == ETIMEDOUT ? MP_ETIMEDOUT : 0;
}

void mp_plat_cond_signal(mp_plat_cond *c) { pthread_cond_signal(COND(c)); }

void mp_plat_cond_broadcast(mp_plat_cond *c) { pthread_cond_broadcast(COND(c)); }
