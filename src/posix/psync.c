/* POSIX backend: process-shared lock, semaphore and event, each living in its own small
 * shared-memory segment (shm.c) so that one fd carries it to a spawned child.
 *
 * Any process may be killed at any instruction, including one just woken from a wait. The
 * rule that follows: no wake-up may depend on one process surviving to pass it on.
 *   lock:      a robust, error-checking, process-shared pthread mutex. On Linux it also has
 *              priority inheritance: a PI futex is handed to the next waiter by the kernel,
 *              and a waiter killed after the hand-over owns the lock, so its death passes the
 *              lock on (EOWNERDEAD) instead of swallowing the wake-up, as a plain robust
 *              futex does (glibc's waiter carries the "others wait" bit; killed between wake
 *              and take, it leaves the others asleep on a free lock).
 *   semaphore: Linux: a futex word (units << 1 | sleepers); a release that finds sleepers adds
 *              its unit and wakes them all in one FUTEX_WAKE_OP, so neither the releaser's
 *              death nor a woken sleeper's can strand the rest (glibc's sem_post wakes one).
 *   event:     Linux: a futex word (set | sleepers | generation); set wakes all, in one
 *              FUTEX_WAKE_OP when someone sleeps. Clearing a set event counts a generation,
 *              so that a waiter whose set was cleared before it ran still returns, as in
 *              Python and on Windows. A process-shared condition variable is no option:
 *              glibc counts its waiters, and a dead one blocks every later signal.
 * Without Linux (MP_LINUX 0: other systems, and the portable CI leg) there is no way to make
 * the kernel carry a wake-up past a death, so every wait there sleeps at most
 * MP_PLAT_RECHECK_NS at a time and looks again: a lost wake-up costs that much, never a
 * hang. The lock is the robust mutex without PI, the semaphore a sem_t, the event a flag and
 * a sem_t that each woken waiter rings on for the next. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "features.h"
#if MP_LINUX
#  include <linux/futex.h>
#  include <sys/syscall.h>
#endif

#include "../platform.h"

static struct timespec to_timespec(int64_t ns) {
  struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000), .tv_nsec = (long)(ns % 1000000000)};
  return ts;
}

/* Timed waits that take CLOCK_REALTIME: the monotonic deadline translated. Callers loop
 * until the monotonic deadline has really passed, so a wall-clock step cannot end them early. */
static struct timespec realtime_deadline(int64_t deadline_ns) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t left = deadline_ns - (int64_t)mp_plat_monotonic_ns();
  if (left < 0)
    left = 0;
  return to_timespec((int64_t)now.tv_sec * 1000000000 + now.tv_nsec + left);
}

static int passed(int64_t deadline_ns) {
  return deadline_ns >= 0 && (int64_t)mp_plat_monotonic_ns() >= deadline_ns;
}

/* The end of one slice of a wait that a lost wake-up must not prolong for good. */
static int64_t slice_end(int64_t deadline_ns) {
  int64_t next = (int64_t)mp_plat_monotonic_ns() + MP_PLAT_RECHECK_NS;
  return deadline_ns >= 0 && deadline_ns < next ? deadline_ns : next;
}

/* ---- a robust mutex in shared memory, shared by the lock and the semaphore's guard ---- */

struct rmutex {
  pthread_mutex_t m;
  uint32_t handoff; /* 1: priority inheritance (the kernel hands over); 0: sliced waits */
};

static int rmutex_init(struct rmutex *r) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  r->handoff = 0;
#if MP_LINUX
  /* ENOTSUP where the kernel has no PI futexes: then the sliced waits below. */
  r->handoff = pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT) == 0;
#endif
  int err = pthread_mutex_init(&r->m, &attr);
  pthread_mutexattr_destroy(&attr);
  return err == 0 ? 0 : mp__os_error_code(MP_EOS, err, "pthread_mutex_init(robust, shared)");
}

/* One pthread lock call with a monotonic deadline (-1: none). */
static int rmutex_lock_until(struct rmutex *r, int64_t deadline_ns) {
  if (deadline_ns < 0)
    return pthread_mutex_lock(&r->m);
#if MP_HAVE_CLOCKLOCK
  /* A PI lock waits on CLOCK_MONOTONIC only with FUTEX_LOCK_PI2 (Linux 5.14); before, glibc
   * answers EINVAL and CLOCK_REALTIME must do. */
  struct timespec ts = to_timespec(deadline_ns);
  int err = pthread_mutex_clocklock(&r->m, CLOCK_MONOTONIC, &ts);
  if (err != EINVAL || !r->handoff)
    return err;
#endif
  struct timespec rt = realtime_deadline(deadline_ns);
  return pthread_mutex_timedlock(&r->m, &rt);
}

/* What a failed pthread lock call means for the caller. */
static int rmutex_error(struct rmutex *r, int err) {
  switch (err) {
  case ETIMEDOUT: return MP_ETIMEDOUT;
  case EDEADLK: return mp_set_error(MP_EDEADLK, "the calling thread already holds this lock");
  case EOWNERDEAD:
    /* The holder died inside its critical section. Mark the mutex usable again and tell
     * the caller, who now holds it, so that it can repair what the dead holder left. */
    pthread_mutex_consistent(&r->m);
    return mp_set_error(MP_EOWNERDEAD, "the previous holder of the lock died holding it");
  default: return mp__os_error_code(MP_EOS, err, "pthread_mutex_lock(robust)");
  }
}

static int rmutex_lock(struct rmutex *r, int64_t deadline_ns) {
  int err;
  if (deadline_ns < 0 && r->handoff) {
    err = pthread_mutex_lock(&r->m);
  } else {
    do
      err = rmutex_lock_until(r, r->handoff ? deadline_ns : slice_end(deadline_ns));
    while (err == ETIMEDOUT && !passed(deadline_ns));
  }
  return err == 0 ? 0 : rmutex_error(r, err);
}

static int rmutex_unlock(struct rmutex *r) {
  int err = pthread_mutex_unlock(&r->m);
  if (err == EPERM)
    return mp_set_error(MP_EPERM, "the calling thread does not hold this lock");
  return err == 0 ? 0 : mp__os_error_code(MP_EOS, err, "pthread_mutex_unlock");
}

/* ---- waiting for a word (Linux) or a sem_t (elsewhere) ------------------------------ */

#if MP_LINUX
/* Not FUTEX_PRIVATE: the waiters live in other processes. */
static long futex(uint32_t *w, int op, uint32_t val, const struct timespec *ts, uint32_t *w2,
                  uint32_t val3) {
  return syscall(SYS_futex, w, op, val, ts, w2, val3);
}

/* Sleeps while *w == expected, until woken or the deadline: 0 (look again), MP_ETIMEDOUT. */
static int word_wait(uint32_t *w, uint32_t expected, int64_t deadline_ns) {
  struct timespec ts = to_timespec(deadline_ns < 0 ? 0 : deadline_ns);
  /* WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline; it sleeps only while the word
   * still holds `expected`, so a change between the caller's load and the call is seen. */
  if (futex(w, FUTEX_WAIT_BITSET, expected, deadline_ns < 0 ? NULL : &ts, NULL,
            FUTEX_BITSET_MATCH_ANY) == 0)
    return 0;
  if (errno == ETIMEDOUT)
    return MP_ETIMEDOUT;
  return errno == EAGAIN || errno == EINTR ? 0 : mp__os_error("futex(FUTEX_WAIT_BITSET)");
}

/* Applies `op` (FUTEX_OP_SET / FUTEX_OP_ADD with arg) to *w and wakes every sleeper on it, in
 * one system call: a process killed here has done both or neither. */
static int word_change_and_wake(uint32_t *w, int op, int arg) {
  if (futex(w, FUTEX_WAKE_OP, INT_MAX, NULL, w, FUTEX_OP(op, arg, FUTEX_OP_CMP_EQ, 0)) >= 0)
    return 0;
  return mp__os_error("futex(FUTEX_WAKE_OP)");
}

static uint32_t word_load(uint32_t *w) { return __atomic_load_n(w, __ATOMIC_SEQ_CST); }

static int word_cas(uint32_t *w, uint32_t *expected, uint32_t desired) {
  return __atomic_compare_exchange_n(w, expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/* Waits until ready(w) succeeds (it may take something, as a unit). While it does not, the
 * word is 0 or `mark`: announce a sleeper (0 -> mark) and sleep while it stays so; whoever
 * changes it from `mark` wakes everyone. 0, MP_ETIMEDOUT, or an error. */
static int word_wait_for(uint32_t *w, uint32_t mark, int (*ready)(uint32_t *),
                         int64_t deadline_ns) {
  for (;;) {
    if (ready(w))
      return 0;
    uint32_t v = 0;
    if (!word_cas(w, &v, mark) && v != mark)
      continue; /* it changed meanwhile: look again */
    int rc = word_wait(w, mark, deadline_ns);
    if (rc == MP_ETIMEDOUT)
      return ready(w) ? 0 : MP_ETIMEDOUT;
    if (rc != 0)
      return rc;
  }
}
#else
/* sem_wait until a monotonic deadline (-1: none): 0, MP_ETIMEDOUT or MP_EOS. */
static int sem_wait_until(sem_t *s, int64_t deadline_ns) {
  for (;;) {
    int r;
    if (deadline_ns < 0) {
      r = sem_wait(s);
    } else {
#  if MP_HAVE_CLOCKLOCK
      struct timespec ts = to_timespec(deadline_ns);
      r = sem_clockwait(s, CLOCK_MONOTONIC, &ts);
#  else
      struct timespec ts = realtime_deadline(deadline_ns);
      r = sem_timedwait(s, &ts);
#  endif
    }
    if (r == 0)
      return 0;
    if (errno == ETIMEDOUT)
      return MP_ETIMEDOUT;
    if (errno != EINTR)
      return mp__os_error("sem_wait");
  }
}

/* The same, one slice at a time: a post that a dead process swallowed costs one slice. */
static int sem_wait_sliced(sem_t *s, int64_t deadline_ns) {
  int rc;
  do
    rc = sem_wait_until(s, slice_end(deadline_ns));
  while (rc == MP_ETIMEDOUT && !passed(deadline_ns));
  return rc;
}
#endif

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
  int rc = pobj_open(&p, MP_PLAT_INVALID, sizeof(struct rmutex));
  if (rc == 0 && (rc = rmutex_init(((struct pobj *)p)->state)) != 0)
    pobj_free(p);
  if (rc == 0)
    *out = p;
  return rc;
}

int mp_plat_plock_import(mp_plat_plock **out, mp_plat_handle h) {
  void *p = NULL;
  int rc = pobj_open(&p, h, sizeof(struct rmutex));
  if (rc == 0)
    *out = p;
  return rc;
}

mp_plat_handle mp_plat_plock_handle(const mp_plat_plock *l) { return mp_plat_shm_handle(l->o.shm); }

int mp_plat_plock_acquire(mp_plat_plock *l, int64_t deadline_ns) {
  return rmutex_lock(l->o.state, deadline_ns);
}

int mp_plat_plock_release(mp_plat_plock *l) { return rmutex_unlock(l->o.state); }

void mp_plat_plock_free(mp_plat_plock *l) { pobj_free(l ? &l->o : NULL); }

/* ---- semaphore -------------------------------------------------------------------- */

#if MP_LINUX
#  define SEM_LIMIT ((unsigned)INT_MAX) /* units live in bits 1..31 of the word */
#  define SLEEPERS 1u
struct psem_state {
  uint32_t word;      /* units << 1 | SLEEPERS */
  uint32_t maxvalue;  /* 0: unbounded */
  struct rmutex wake; /* held by a release that wakes sleepers (see psem_release_woken) */
};
#else
#  define SEM_LIMIT ((unsigned)SEM_VALUE_MAX)
struct psem_state {
  sem_t sem;
  unsigned maxvalue;
  struct rmutex guard; /* held across "check the value, then post" of a bounded release */
};
#endif

struct mp_plat_psem {
  struct pobj o;
};

#define PSEM(s) ((struct psem_state *)(s)->o.state)

static int too_many(unsigned maxvalue) {
  if (maxvalue == 0)
    return mp_set_error(MP_EINVAL, "mp_psem_release: the value would overflow");
  return mp_set_error(MP_EINVAL, "mp_psem_release: released too many times (maxvalue %u)",
                      maxvalue);
}

static int psem_init(struct psem_state *st, unsigned initial, unsigned maxvalue) {
  st->maxvalue = maxvalue;
#if MP_LINUX
  st->word = initial << 1;
  return rmutex_init(&st->wake);
#else
  if (sem_init(&st->sem, 1, initial) != 0)
    return mp__os_error("sem_init(shared)");
  int rc = rmutex_init(&st->guard);
  if (rc != 0)
    sem_destroy(&st->sem);
  return rc;
#endif
}

int mp_plat_psem_create(mp_plat_psem **out, unsigned initial, unsigned maxvalue) {
  if (initial > SEM_LIMIT || maxvalue > SEM_LIMIT)
    return mp_set_error(MP_EINVAL, "mp_psem_create: values above %u are not supported", SEM_LIMIT);
  void *p = NULL;
  int rc = pobj_open(&p, MP_PLAT_INVALID, sizeof(struct psem_state));
  if (rc == 0 && (rc = psem_init(((struct pobj *)p)->state, initial, maxvalue)) != 0)
    pobj_free(p);
  if (rc == 0)
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

#if MP_LINUX
/* Takes a unit if there is one. */
static int psem_try(uint32_t *w) {
  uint32_t v = word_load(w);
  while (v >= 2)
    if (word_cas(w, &v, v - 2))
      return 1;
  return 0;
}

int mp_plat_psem_acquire(mp_plat_psem *s, int64_t deadline_ns) {
  return word_wait_for(&PSEM(s)->word, SLEEPERS, psem_try, deadline_ns);
}

/* With sleepers announced, the kernel's "add 1" turns units << 1 | 1 into (units + 1) << 1:
 * one more unit and the flag cleared, then every sleeper wakes and competes for it (those
 * that lose announce themselves again). This is exact only while the flag stays set between
 * the check and the call: acquirers never clear it, and `wake` keeps releasers in turn. */
static int psem_release_woken(struct psem_state *st, unsigned max) {
  int rc = rmutex_lock(&st->wake, -1);
  if (rc != 0 && rc != MP_EOWNERDEAD) /* a dead holder left nothing half-done: one syscall */
    return rc;
  uint32_t v = word_load(&st->word);
  for (;;) {
    if ((v >> 1) >= max) {
      rc = too_many(st->maxvalue);
      break;
    }
    if (v & SLEEPERS) {
      rc = word_change_and_wake(&st->word, FUTEX_OP_ADD, 1);
      break;
    }
    if (word_cas(&st->word, &v, v + 2)) {
      rc = 0;
      break;
    }
  }
  pthread_mutex_unlock(&st->wake.m);
  return rc;
}

int mp_plat_psem_value(mp_plat_psem *s, unsigned *value) {
  *value = word_load(&PSEM(s)->word) >> 1;
  return 0;
}

int mp_plat_psem_release(mp_plat_psem *s) {
  struct psem_state *st = PSEM(s);
  unsigned max = st->maxvalue ? st->maxvalue : SEM_LIMIT;
  uint32_t v = word_load(&st->word);
  while (!(v & SLEEPERS)) { /* nobody asleep: one atomic add, no system call */
    if ((v >> 1) >= max)
      return too_many(st->maxvalue);
    if (word_cas(&st->word, &v, v + 2))
      return 0;
  }
  return psem_release_woken(st, max);
}
#else
int mp_plat_psem_acquire(mp_plat_psem *s, int64_t deadline_ns) {
  return sem_wait_sliced(&PSEM(s)->sem, deadline_ns);
}

/* POSIX lets sem_getvalue report waiters as a negative value: none are free then. */
int mp_plat_psem_value(mp_plat_psem *s, unsigned *value) {
  int v = 0;
  if (sem_getvalue(&PSEM(s)->sem, &v) != 0)
    return mp__os_error("sem_getvalue");
  *value = v > 0 ? (unsigned)v : 0;
  return 0;
}

int mp_plat_psem_release(mp_plat_psem *s) {
  struct psem_state *st = PSEM(s);
  if (st->maxvalue == 0) {
    if (sem_post(&st->sem) == 0)
      return 0;
    return errno == EOVERFLOW ? too_many(0) : mp__os_error("sem_post");
  }
  /* Releases serialise on the guard; acquirers only lower the value meanwhile, so the
   * check stays true until the post. A guard whose holder died is simply taken over. */
  int rc = rmutex_lock(&st->guard, -1);
  if (rc != 0 && rc != MP_EOWNERDEAD)
    return rc;
  int value = 0;
  sem_getvalue(&st->sem, &value);
  if ((unsigned)value >= st->maxvalue)
    rc = too_many(st->maxvalue);
  else
    rc = sem_post(&st->sem) == 0 ? 0 : mp__os_error("sem_post");
  pthread_mutex_unlock(&st->guard.m);
  return rc;
}
#endif

void mp_plat_psem_free(mp_plat_psem *s) { pobj_free(s ? &s->o : NULL); }

/* ---- event ------------------------------------------------------------------------ */

#if MP_LINUX
#  define EV_SET 1u
#  define EV_SLEEPERS 2u
#  define EV_GEN 4u /* the generation counts clears of a set event, in the bits above */
struct pevent_state {
  uint32_t word; /* EV_SET | EV_SLEEPERS | generation */
};
#else
struct pevent_state {
  uint32_t flag;
  uint32_t gen; /* counts clears of a set event */
  sem_t bell;   /* rung by set and by every waiter it wakes, for the next one */
};
#endif

struct mp_plat_pevent {
  struct pobj o;
};

#define PEVENT(e) ((struct pevent_state *)(e)->o.state)

int mp_plat_pevent_create(mp_plat_pevent **out) {
  void *p = NULL;
  int rc = pobj_open(&p, MP_PLAT_INVALID, sizeof(struct pevent_state));
#if !MP_LINUX
  if (rc == 0 && sem_init(&((struct pevent_state *)((struct pobj *)p)->state)->bell, 1, 0) != 0) {
    rc = mp__os_error("sem_init(shared)");
    pobj_free(p);
  }
#endif
  if (rc == 0)
    *out = p;
  return rc;
}

int mp_plat_pevent_import(mp_plat_pevent **out, mp_plat_handle h) {
  void *p = NULL;
  int rc = pobj_open(&p, h, sizeof(struct pevent_state));
  if (rc == 0)
    *out = p;
  return rc;
}

mp_plat_handle mp_plat_pevent_handle(const mp_plat_pevent *e) {
  return mp_plat_shm_handle(e->o.shm);
}

#if MP_LINUX
int mp_plat_pevent_set(mp_plat_pevent *e) {
  uint32_t *w = &PEVENT(e)->word;
  uint32_t v = word_load(w);
  for (;;) {
    if (v & EV_SET)
      return 0;
    if (v & EV_SLEEPERS) /* set and wake in one call: a setter killed here did both or none */
      return word_change_and_wake(w, FUTEX_OP_OR, (int)EV_SET);
    if (word_cas(w, &v, v | EV_SET))
      return 0;
  }
}

int mp_plat_pevent_clear(mp_plat_pevent *e) {
  uint32_t *w = &PEVENT(e)->word;
  uint32_t v = word_load(w);
  while ((v & EV_SET) && !word_cas(w, &v, (v & ~EV_SET) + EV_GEN)) {
  }
  return 0; /* sleepers stay announced */
}

int mp_plat_pevent_is_set(mp_plat_pevent *e) { return (word_load(&PEVENT(e)->word) & EV_SET) != 0; }

int mp_plat_pevent_sleepers(mp_plat_pevent *e) {
  return (word_load(&PEVENT(e)->word) & EV_SLEEPERS) != 0;
}

/* Returns once the event is set, or was set since the wait began (a later generation). */
int mp_plat_pevent_wait(mp_plat_pevent *e, int64_t deadline_ns) {
  uint32_t *w = &PEVENT(e)->word;
  uint32_t v = word_load(w), gen = v & ~(EV_SET | EV_SLEEPERS);
  for (;;) {
    if ((v & EV_SET) || (v & ~(EV_SET | EV_SLEEPERS)) != gen)
      return 0;
    if (!(v & EV_SLEEPERS) && !word_cas(w, &v, v | EV_SLEEPERS))
      continue; /* it changed meanwhile: look again */
    v |= EV_SLEEPERS;
    int rc = word_wait(w, v, deadline_ns);
    v = word_load(w);
    if (rc == MP_ETIMEDOUT)
      return (v & EV_SET) || (v & ~(EV_SET | EV_SLEEPERS)) != gen ? 0 : MP_ETIMEDOUT;
    if (rc != 0)
      return rc;
  }
}
#else
/* Posts the bell unless it already rings: at most a few stale posts, never a pile. */
static void ring(sem_t *bell) {
  int value = 0;
  if (sem_getvalue(bell, &value) != 0 || value <= 0)
    sem_post(bell);
}

int mp_plat_pevent_set(mp_plat_pevent *e) {
  __atomic_store_n(&PEVENT(e)->flag, 1u, __ATOMIC_SEQ_CST);
  ring(&PEVENT(e)->bell);
  return 0;
}

int mp_plat_pevent_clear(mp_plat_pevent *e) {
  if (__atomic_exchange_n(&PEVENT(e)->flag, 0u, __ATOMIC_SEQ_CST))
    __atomic_fetch_add(&PEVENT(e)->gen, 1u, __ATOMIC_SEQ_CST);
  return 0; /* a ring left behind wakes a waiter that finds the generation moved, or sleeps on */
}

int mp_plat_pevent_sleepers(mp_plat_pevent *e) {
  (void)e;
  return MP_ENOTSUP;
}

int mp_plat_pevent_is_set(mp_plat_pevent *e) {
  return __atomic_load_n(&PEVENT(e)->flag, __ATOMIC_SEQ_CST) != 0;
}

/* Set now, or set (and cleared) since the wait began, which `gen` moving shows. */
static int ev_happened(mp_plat_pevent *e, uint32_t gen) {
  return mp_plat_pevent_is_set(e) || __atomic_load_n(&PEVENT(e)->gen, __ATOMIC_SEQ_CST) != gen;
}

int mp_plat_pevent_wait(mp_plat_pevent *e, int64_t deadline_ns) {
  uint32_t gen = __atomic_load_n(&PEVENT(e)->gen, __ATOMIC_SEQ_CST);
  for (;;) {
    if (ev_happened(e, gen)) {
      ring(&PEVENT(e)->bell); /* pass the wake-up on to the next waiter */
      return 0;
    }
    int rc = sem_wait_until(&PEVENT(e)->bell, slice_end(deadline_ns));
    if (rc == MP_ETIMEDOUT && passed(deadline_ns))
      return ev_happened(e, gen) ? 0 : MP_ETIMEDOUT;
    if (rc != 0 && rc != MP_ETIMEDOUT)
      return rc;
  }
}
#endif

void mp_plat_pevent_free(mp_plat_pevent *e) { pobj_free(e ? &e->o : NULL); }
