/* POSIX backend: process-shared lock, semaphore and event, each living in its own small
 * shared-memory segment (shm.c) so that one fd carries it to a spawned child.
 *   lock:      a robust, error-checking, process-shared pthread mutex
 *   semaphore: a process-shared sem_t, plus a robust mutex that serialises bounded releases
 *   event:     a 32-bit word and the Linux futex (a dead waiter leaves nothing behind,
 *              unlike a process-shared condition variable whose waiter count it would skew) */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#  include <linux/futex.h>
#  include <sys/syscall.h>
#endif

#include "../platform.h"

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
#  define MP_HAVE_CLOCKLOCK 1
#endif

static struct timespec to_timespec(int64_t ns) {
  struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000)};
  return ts;
}

/* Without clocklock, timed waits take CLOCK_REALTIME: translate the monotonic deadline. */
#ifndef MP_HAVE_CLOCKLOCK
static struct timespec realtime_deadline(int64_t deadline_ns) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t left = deadline_ns - (int64_t)mp_plat_monotonic_ns();
  if (left < 0)
    left = 0;
  return to_timespec((int64_t)now.tv_sec * 1000000000 + now.tv_nsec + left);
}
#endif

/* ---- a robust mutex in shared memory, shared by the lock and the semaphore's guard ---- */

static int robust_init(pthread_mutex_t *m) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  int err = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  return err == 0 ? 0 : mp__os_error_code(MP_EOS, err, "pthread_mutex_init(robust, shared)");
}

static int robust_lock(pthread_mutex_t *m, int64_t deadline_ns) {
  int err;
  if (deadline_ns < 0) {
    err = pthread_mutex_lock(m);
  } else {
#ifdef MP_HAVE_CLOCKLOCK
    struct timespec ts = to_timespec(deadline_ns);
    err = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
#else
    struct timespec ts = realtime_deadline(deadline_ns);
    err = pthread_mutex_timedlock(m, &ts);
#endif
  }
  switch (err) {
  case 0: return 0;
  case ETIMEDOUT: return MP_ETIMEDOUT;
  case EDEADLK: return mp_set_error(MP_EDEADLK, "the calling thread already holds this lock");
  case EOWNERDEAD:
    /* The holder died inside its critical section. Mark the mutex usable again and tell
     * the caller, who now holds it, so that it can repair what the dead holder left. */
    pthread_mutex_consistent(m);
    return mp_set_error(MP_EOWNERDEAD, "the previous holder of the lock died holding it");
  default: return mp__os_error_code(MP_EOS, err, "pthread_mutex_lock(robust)");
  }
}

static int robust_unlock(pthread_mutex_t *m) {
  int err = pthread_mutex_unlock(m);
  if (err == EPERM)
    return mp_set_error(MP_EPERM, "the calling thread does not hold this lock");
  return err == 0 ? 0 : mp__os_error_code(MP_EOS, err, "pthread_mutex_unlock");
}

/* ---- each object: a segment and the state in it ----------------------------------- */

/* The three objects share one shape, {struct pobj o;}: their state is the whole segment.
 * pobj_open creates a segment (h == MP_PLAT_INVALID) or maps the one h names. */
struct pobj {
  mp_plat_shm *shm;
  void *state;
};

static int pobj_open(void **out, mp_plat_handle h, size_t size) {
  struct pobj *o = malloc(sizeof *o);
  if (o == NULL) {
    mp_plat_handle_close(h);
    return mp_set_error(MP_ENOMEM, "process-shared object: out of memory");
  }
  int rc = h == MP_PLAT_INVALID ? mp_plat_shm_create(&o->shm, size)
                                : mp_plat_shm_import(&o->shm, h, size);
  if (rc != 0) {
    free(o);
    return rc;
  }
  o->state = mp_plat_shm_addr(o->shm);
  *out = o;
  return 0;
}

/* The state itself is never destroyed: other processes may still map and use it. */
static void pobj_free(struct pobj *o) {
  if (o == NULL)
    return;
  mp_plat_shm_free(o->shm);
  free(o);
}

/* ---- lock ------------------------------------------------------------------------- */

struct mp_plat_plock {
  struct pobj o;
};

int mp_plat_plock_create(mp_plat_plock **out) {
  void *p = NULL;
  int rc = pobj_open(&p, MP_PLAT_INVALID, sizeof(pthread_mutex_t));
  if (rc == 0 && (rc = robust_init(((struct pobj *)p)->state)) != 0)
    pobj_free(p);
  if (rc == 0)
    *out = p;
  return rc;
}

int mp_plat_plock_import(mp_plat_plock **out, mp_plat_handle h) {
  void *p = NULL;
  int rc = pobj_open(&p, h, sizeof(pthread_mutex_t));
  if (rc == 0)
    *out = p;
  return rc;
}

mp_plat_handle mp_plat_plock_handle(const mp_plat_plock *l) { return mp_plat_shm_handle(l->o.shm); }

int mp_plat_plock_acquire(mp_plat_plock *l, int64_t deadline_ns) {
  return robust_lock(l->o.state, deadline_ns);
}

int mp_plat_plock_release(mp_plat_plock *l) { return robust_unlock(l->o.state); }

void mp_plat_plock_free(mp_plat_plock *l) { pobj_free(l ? &l->o : NULL); }

/* ---- semaphore -------------------------------------------------------------------- */

struct psem_state {
  sem_t sem;
  pthread_mutex_t guard; /* held across "check the value, then post" of a bounded release */
  unsigned maxvalue;
};

struct mp_plat_psem {
  struct pobj o;
};

#define PSEM(s) ((struct psem_state *)(s)->o.state)

int mp_plat_psem_create(mp_plat_psem **out, unsigned initial, unsigned maxvalue) {
  if (initial > SEM_VALUE_MAX || maxvalue > SEM_VALUE_MAX)
    return mp_set_error(MP_EINVAL, "mp_psem_create: values above %d are not supported",
                        (int)SEM_VALUE_MAX);
  void *p = NULL;
  int rc = pobj_open(&p, MP_PLAT_INVALID, sizeof(struct psem_state));
  if (rc != 0)
    return rc;
  struct psem_state *st = ((struct pobj *)p)->state;
  st->maxvalue = maxvalue;
  if (sem_init(&st->sem, 1, initial) != 0)
    rc = mp__os_error("sem_init(shared)");
  else if ((rc = robust_init(&st->guard)) != 0)
    sem_destroy(&st->sem);
  if (rc != 0)
    pobj_free(p);
  else
    *out = p;
  return rc;
}

int mp_plat_psem_import(mp_plat_psem **out, mp_plat_handle h) {
  void *p = NULL;
  int rc = pobj_open(&p, h, sizeof(struct psem_state));
  if (rc == 0)
    *out = p;
  return rc;
}

mp_plat_handle mp_plat_psem_handle(const mp_plat_psem *s) { return mp_plat_shm_handle(s->o.shm); }

int mp_plat_psem_acquire(mp_plat_psem *s, int64_t deadline_ns) {
  for (;;) {
    int r;
    if (deadline_ns < 0) {
      r = sem_wait(&PSEM(s)->sem);
    } else {
#ifdef MP_HAVE_CLOCKLOCK
      struct timespec ts = to_timespec(deadline_ns);
      r = sem_clockwait(&PSEM(s)->sem, CLOCK_MONOTONIC, &ts);
#else
      struct timespec ts = realtime_deadline(deadline_ns);
      r = sem_timedwait(&PSEM(s)->sem, &ts);
#endif
    }
    if (r == 0)
      return 0;
    if (errno == ETIMEDOUT)
      return MP_ETIMEDOUT;
    if (errno != EINTR)
      return mp__os_error("sem_wait");
  }
}

int mp_plat_psem_release(mp_plat_psem *s) {
  struct psem_state *st = PSEM(s);
  if (st->maxvalue == 0) {
    if (sem_post(&st->sem) == 0)
      return 0;
    return errno == EOVERFLOW ? mp_set_error(MP_EINVAL, "mp_psem_release: the value would overflow")
                              : mp__os_error("sem_post");
  }
  /* Releases serialise on the guard; acquirers only lower the value meanwhile, so the
   * check stays true until the post. A guard whose holder died is simply taken over. */
  int rc = robust_lock(&st->guard, -1);
  if (rc != 0 && rc != MP_EOWNERDEAD)
    return rc;
  int value = 0;
  sem_getvalue(&st->sem, &value);
  if ((unsigned)value >= st->maxvalue)
    rc = mp_set_error(MP_EINVAL, "mp_psem_release: released too many times (maxvalue %u)",
                      st->maxvalue);
  else
    rc = sem_post(&st->sem) == 0 ? 0 : mp__os_error("sem_post");
  pthread_mutex_unlock(&st->guard);
  return rc;
}

void mp_plat_psem_free(mp_plat_psem *s) { pobj_free(s ? &s->o : NULL); }

/* ---- event ------------------------------------------------------------------------ */

struct mp_plat_pevent {
  struct pobj o;
};

#define FLAG(e) ((uint32_t *)(e)->o.state)

int mp_plat_pevent_create(mp_plat_pevent **out) {
#ifndef __linux__
  (void)out;
  return mp_set_error(MP_ENOTSUP, "mp_pevent needs the Linux futex on POSIX systems");
#else
  void *p = NULL;
  int rc = pobj_open(&p, MP_PLAT_INVALID, sizeof(uint32_t));
  if (rc == 0)
    *out = p;
  return rc;
#endif
}

int mp_plat_pevent_import(mp_plat_pevent **out, mp_plat_handle h) {
  void *p = NULL;
  int rc = pobj_open(&p, h, sizeof(uint32_t));
  if (rc == 0)
    *out = p;
  return rc;
}

mp_plat_handle mp_plat_pevent_handle(const mp_plat_pevent *e) {
  return mp_plat_shm_handle(e->o.shm);
}

int mp_plat_pevent_set(mp_plat_pevent *e) {
  __atomic_store_n(FLAG(e), 1u, __ATOMIC_SEQ_CST);
#ifdef __linux__
  /* Not FUTEX_PRIVATE: the waiters may live in other processes. */
  syscall(SYS_futex, FLAG(e), FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#endif
  return 0;
}

int mp_plat_pevent_clear(mp_plat_pevent *e) {
  __atomic_store_n(FLAG(e), 0u, __ATOMIC_SEQ_CST);
  return 0;
}

int mp_plat_pevent_is_set(mp_plat_pevent *e) {
  return __atomic_load_n(FLAG(e), __ATOMIC_SEQ_CST) != 0;
}

int mp_plat_pevent_wait(mp_plat_pevent *e, int64_t deadline_ns) {
#ifdef __linux__
  while (__atomic_load_n(FLAG(e), __ATOMIC_SEQ_CST) == 0) {
    struct timespec ts = to_timespec(deadline_ns < 0 ? 0 : deadline_ns);
    /* WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline; it sleeps only while the
     * word is still 0, so a set between the load and the call is never missed. */
    long r = syscall(SYS_futex, FLAG(e), FUTEX_WAIT_BITSET, 0u, deadline_ns < 0 ? NULL : &ts, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r != 0 && errno == ETIMEDOUT)
      return mp_plat_pevent_is_set(e) ? 0 : MP_ETIMEDOUT;
    if (r != 0 && errno != EAGAIN && errno != EINTR)
      return mp__os_error("futex(FUTEX_WAIT_BITSET)");
  }
  return 0;
#else
  (void)e;
  (void)deadline_ns;
  return mp_set_error(MP_ENOTSUP, "mp_pevent needs the Linux futex on POSIX systems");
#endif
}

void mp_plat_pevent_free(mp_plat_pevent *e) { pobj_free(e ? &e->o : NULL); }
