/* In-process synchronisation in the manner of Python's threading module: Lock, RLock,
 * Condition, Semaphore/BoundedSemaphore, Event, Barrier. Every object is a platform mutex
 * plus condition variable(s) and plain state, so that timeouts, "release from another
 * thread" and the error codes behave the same on every system. */
#include <stdlib.h>

#include "compat.h"
#include "deadline.h"
#include "platform.h"

int mp__deadline_ns(int timeout_ms, int64_t *deadline_ns) {
  if (timeout_ms < MP_FOREVER)
    return mp_set_error(MP_EINVAL, "timeout %d ms: use MP_FOREVER (-1), 0 or a positive value",
                        timeout_ms);
  *deadline_ns = timeout_ms == MP_FOREVER
                     ? -1
                     : (int64_t)mp_plat_monotonic_ns() + (int64_t)timeout_ms * 1000000;
  return 0;
}

/* An identity for the calling thread that costs no system call: the address of a
 * thread-local byte (unique among the threads alive at any moment). */
static MP_THREAD_LOCAL char self_tag;
#define SELF ((uintptr_t)&self_tag)

/* Allocates an object whose first members are a mutex and a condition variable. */
struct mc {
  mp_plat_mutex m;
  mp_plat_cond cv;
};

static int mc_init(struct mc *mc) {
  int rc = mp_plat_mutex_init(&mc->m);
  if (rc == 0 && (rc = mp_plat_cond_init(&mc->cv)) != 0)
    mp_plat_mutex_destroy(&mc->m);
  return rc;
}

static void mc_destroy(struct mc *mc) {
  mp_plat_cond_destroy(&mc->cv);
  mp_plat_mutex_destroy(&mc->m);
}

static void *mc_new(size_t size, const char *what) {
  struct mc *mc = calloc(1, size);
  if (mc == NULL) {
    mp_set_error(MP_ENOMEM, "%s: out of memory", what);
    return NULL;
  }
  if (mc_init(mc) != 0) {
    free(mc);
    return NULL;
  }
  return mc;
}

#define CHECK_OUT(p, what)                                                                         \
  do {                                                                                             \
    if ((p) == NULL)                                                                               \
      return mp_set_error(MP_EINVAL, "%s: the output pointer is NULL", what);                      \
  } while (0)
#define CHECK_OBJ(p, what)                                                                         \
  do {                                                                                             \
    if ((p) == NULL)                                                                               \
      return mp_set_error(MP_EINVAL, "%s: the object is NULL", what);                              \
  } while (0)

/* ---- Lock ------------------------------------------------------------------------- */

struct mp_lock {
  struct mc mc;
  int locked;
  unsigned waiters;
  uintptr_t holder; /* who acquired it; read only by debug builds, for MP_EDEADLK */
};

int mp_lock_create(mp_lock **l) {
  CHECK_OUT(l, "mp_lock_create");
  return (*l = mc_new(sizeof **l, "mp_lock_create")) != NULL ? 0 : mp_last_error_code();
}

/* Takes the lock once it is free or the deadline passes; the caller holds mc.m. */
static int lock_take_locked(mp_lock *l, int64_t deadline) {
  int rc = 0;
  while (l->locked && rc == 0) {
    l->waiters++;
    rc = mp_plat_cond_wait(&l->mc.cv, &l->mc.m, deadline);
    l->waiters--;
  }
  if (l->locked)
    return MP_ETIMEDOUT;
  l->locked = 1;
  l->holder = SELF;
  return 0;
}

int mp_lock_acquire(mp_lock *l, int timeout_ms) {
  CHECK_OBJ(l, "mp_lock_acquire");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc != 0)
    return rc;
  mp_plat_mutex_lock(&l->mc.m);
#ifndef NDEBUG
  if (l->locked && l->holder == SELF) {
    mp_plat_mutex_unlock(&l->mc.m);
    return mp_set_error(MP_EDEADLK, "mp_lock_acquire: the calling thread already holds this "
                                    "lock (use an mp_rlock to re-enter)");
  }
#endif
  rc = lock_take_locked(l, deadline);
  mp_plat_mutex_unlock(&l->mc.m);
  return rc;
}

/* Acquires without the debug self-check (the condition re-acquiring after a wait). */
static void lock_acquire_forever(mp_lock *l) {
  mp_plat_mutex_lock(&l->mc.m);
  lock_take_locked(l, -1);
  mp_plat_mutex_unlock(&l->mc.m);
}

int mp_lock_release(mp_lock *l) {
  CHECK_OBJ(l, "mp_lock_release");
  mp_plat_mutex_lock(&l->mc.m);
  if (!l->locked) {
    mp_plat_mutex_unlock(&l->mc.m);
    return mp_set_error(MP_ESTATE, "mp_lock_release: the lock is not locked");
  }
  l->locked = 0;
  l->holder = 0;
  if (l->waiters > 0)
    mp_plat_cond_signal(&l->mc.cv);
  mp_plat_mutex_unlock(&l->mc.m);
  return 0;
}

int mp_lock_locked(mp_lock *l) {
  CHECK_OBJ(l, "mp_lock_locked");
  mp_plat_mutex_lock(&l->mc.m);
  int locked = l->locked;
  mp_plat_mutex_unlock(&l->mc.m);
  return locked;
}

void mp_lock_free(mp_lock *l) {
  if (l == NULL)
    return;
  mc_destroy(&l->mc);
  free(l);
}

/* ---- RLock ------------------------------------------------------------------------ */

struct mp_rlock {
  struct mc mc;
  uintptr_t owner;
  int count;
  unsigned waiters;
};

int mp_rlock_create(mp_rlock **l) {
  CHECK_OUT(l, "mp_rlock_create");
  return (*l = mc_new(sizeof **l, "mp_rlock_create")) != NULL ? 0 : mp_last_error_code();
}

int mp_rlock_acquire(mp_rlock *l, int timeout_ms) {
  CHECK_OBJ(l, "mp_rlock_acquire");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc != 0)
    return rc;
  mp_plat_mutex_lock(&l->mc.m);
  if (l->count > 0 && l->owner == SELF) {
    l->count++;
  } else {
    while (l->count > 0 && rc == 0) {
      l->waiters++;
      rc = mp_plat_cond_wait(&l->mc.cv, &l->mc.m, deadline);
      l->waiters--;
    }
    rc = l->count > 0 ? MP_ETIMEDOUT : 0;
    if (rc == 0) {
      l->owner = SELF;
      l->count = 1;
    }
  }
  mp_plat_mutex_unlock(&l->mc.m);
  return rc;
}

int mp_rlock_release(mp_rlock *l) {
  CHECK_OBJ(l, "mp_rlock_release");
  int rc = 0;
  mp_plat_mutex_lock(&l->mc.m);
  if (l->count == 0 || l->owner != SELF)
    rc = mp_set_error(MP_EPERM, "mp_rlock_release: the calling thread does not hold this lock");
  else if (--l->count == 0 && l->waiters > 0)
    mp_plat_cond_signal(&l->mc.cv);
  mp_plat_mutex_unlock(&l->mc.m);
  return rc;
}

int mp_rlock_level(mp_rlock *l) {
  CHECK_OBJ(l, "mp_rlock_level");
  mp_plat_mutex_lock(&l->mc.m);
  int level = l->count > 0 && l->owner == SELF ? l->count : 0;
  mp_plat_mutex_unlock(&l->mc.m);
  return level;
}

void mp_rlock_free(mp_rlock *l) {
  if (l == NULL)
    return;
  mc_destroy(&l->mc);
  free(l);
}

/* ---- Condition -------------------------------------------------------------------- */

/* Each waiter waits on its own condition variable, queued in arrival order, so that
 * notify(n) wakes exactly the n longest waiting (as Python's Condition does). */
struct waiter {
  mp_plat_cond cv;
  int notified;
  struct waiter *next;
};

struct mp_cond {
  mp_plat_mutex m; /* guards the queue */
  mp_lock *lock;
  int own_lock;
  struct waiter *head, *tail;
};

int mp_cond_create(mp_cond **out, mp_lock *lock) {
  CHECK_OUT(out, "mp_cond_create");
  mp_cond *c = calloc(1, sizeof *c);
  if (c == NULL)
    return mp_set_error(MP_ENOMEM, "mp_cond_create: out of memory");
  int rc = mp_plat_mutex_init(&c->m);
  if (rc == 0 && lock == NULL) {
    rc = mp_lock_create(&lock);
    c->own_lock = 1;
    if (rc != 0)
      mp_plat_mutex_destroy(&c->m);
  }
  if (rc != 0) {
    free(c);
    return rc;
  }
  c->lock = lock;
  *out = c;
  return 0;
}

mp_lock *mp_cond_lock(mp_cond *c) { return c == NULL ? NULL : c->lock; }

/* Python's test for "is the lock held": a lock that can be taken at once was not. */
static int cond_check_held(mp_cond *c, const char *what) {
  mp_lock *l = c->lock;
  mp_plat_mutex_lock(&l->mc.m);
  int held = l->locked;
  mp_plat_mutex_unlock(&l->mc.m);
  return held ? 0 : mp_set_error(MP_ESTATE, "%s: the condition's lock is not held", what);
}

static void cond_unlink(mp_cond *c, struct waiter *w) {
  struct waiter **pp = &c->head, *prev = NULL;
  while (*pp != w) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  *pp = w->next;
  if (c->tail == w)
    c->tail = prev;
}

int mp_cond_wait(mp_cond *c, int timeout_ms) {
  CHECK_OBJ(c, "mp_cond_wait");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc != 0 || (rc = cond_check_held(c, "mp_cond_wait")) != 0)
    return rc;
  struct waiter w = {.notified = 0, .next = NULL};
  if ((rc = mp_plat_cond_init(&w.cv)) != 0)
    return rc;
  mp_plat_mutex_lock(&c->m);
  if (c->tail)
    c->tail->next = &w;
  else
    c->head = &w;
  c->tail = &w;
  mp_plat_mutex_unlock(&c->m);
  /* Queued before the release: a notify by the next holder cannot be missed. */
  mp_lock_release(c->lock);
  mp_plat_mutex_lock(&c->m);
  while (!w.notified && rc == 0)
    rc = mp_plat_cond_wait(&w.cv, &c->m, deadline);
  int notified = w.notified;
  if (!notified)
    cond_unlink(c, &w);
  mp_plat_mutex_unlock(&c->m);
  mp_plat_cond_destroy(&w.cv);
  lock_acquire_forever(c->lock);
  return notified ? 0 : MP_ETIMEDOUT;
}

int mp_cond_notify(mp_cond *c, int n) {
  CHECK_OBJ(c, "mp_cond_notify");
  if (n < 0)
    return mp_set_error(MP_EINVAL, "mp_cond_notify: n is negative (%d)", n);
  int rc = cond_check_held(c, "mp_cond_notify");
  if (rc != 0)
    return rc;
  mp_plat_mutex_lock(&c->m);
  while (n-- > 0 && c->head != NULL) {
    struct waiter *w = c->head;
    c->head = w->next;
    if (c->head == NULL)
      c->tail = NULL;
    w->notified = 1;
    mp_plat_cond_signal(&w->cv);
  }
  mp_plat_mutex_unlock(&c->m);
  return 0;
}

int mp_cond_notify_all(mp_cond *c) { return mp_cond_notify(c, 0x7fffffff); }

void mp_cond_free(mp_cond *c) {
  if (c == NULL)
    return;
  if (c->own_lock)
    mp_lock_free(c->lock);
  mp_plat_mutex_destroy(&c->m);
  free(c);
}

/* ---- Semaphore -------------------------------------------------------------------- */

struct mp_sem {
  struct mc mc;
  unsigned value, maxvalue;
  unsigned waiters;
};

int mp_sem_create(mp_sem **s, unsigned value, unsigned maxvalue) {
  CHECK_OUT(s, "mp_sem_create");
  if (maxvalue != MP_SEM_UNBOUNDED && value > maxvalue)
    return mp_set_error(MP_EINVAL, "mp_sem_create: value %u exceeds maxvalue %u", value, maxvalue);
  if ((*s = mc_new(sizeof **s, "mp_sem_create")) == NULL)
    return mp_last_error_code();
  (*s)->value = value;
  (*s)->maxvalue = maxvalue;
  return 0;
}

int mp_sem_acquire(mp_sem *s, int timeout_ms) {
  CHECK_OBJ(s, "mp_sem_acquire");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc != 0)
    return rc;
  mp_plat_mutex_lock(&s->mc.m);
  while (s->value == 0 && rc == 0) {
    s->waiters++;
    rc = mp_plat_cond_wait(&s->mc.cv, &s->mc.m, deadline);
    s->waiters--;
  }
  rc = s->value == 0 ? MP_ETIMEDOUT : 0;
  if (rc == 0)
    s->value--;
  mp_plat_mutex_unlock(&s->mc.m);
  return rc;
}

int mp_sem_release(mp_sem *s) {
  CHECK_OBJ(s, "mp_sem_release");
  int rc = 0;
  mp_plat_mutex_lock(&s->mc.m);
  if (s->maxvalue != MP_SEM_UNBOUNDED && s->value >= s->maxvalue)
    rc = mp_set_error(MP_EINVAL, "mp_sem_release: released too many times (maxvalue %u)",
                      s->maxvalue);
  else if (s->value == 0xffffffffu)
    rc = mp_set_error(MP_EINVAL, "mp_sem_release: the value would overflow");
  else if (s->value++, s->waiters > 0)
    mp_plat_cond_signal(&s->mc.cv);
  mp_plat_mutex_unlock(&s->mc.m);
  return rc;
}

unsigned mp_sem_value(mp_sem *s) {
  if (s == NULL)
    return 0;
  mp_plat_mutex_lock(&s->mc.m);
  unsigned v = s->value;
  mp_plat_mutex_unlock(&s->mc.m);
  return v;
}

void mp_sem_free(mp_sem *s) {
  if (s == NULL)
    return;
  mc_destroy(&s->mc);
  free(s);
}

/* ---- Event ------------------------------------------------------------------------ */

struct mp_event {
  struct mc mc;
  int flag;
};

int mp_event_create(mp_event **e) {
  CHECK_OUT(e, "mp_event_create");
  return (*e = mc_new(sizeof **e, "mp_event_create")) != NULL ? 0 : mp_last_error_code();
}

static int event_put(mp_event *e, int flag, const char *what) {
  CHECK_OBJ(e, what);
  mp_plat_mutex_lock(&e->mc.m);
  e->flag = flag;
  if (flag)
    mp_plat_cond_broadcast(&e->mc.cv);
  mp_plat_mutex_unlock(&e->mc.m);
  return 0;
}

int mp_event_set(mp_event *e) { return event_put(e, 1, "mp_event_set"); }

int mp_event_clear(mp_event *e) { return event_put(e, 0, "mp_event_clear"); }

int mp_event_is_set(mp_event *e) {
  CHECK_OBJ(e, "mp_event_is_set");
  mp_plat_mutex_lock(&e->mc.m);
  int flag = e->flag;
  mp_plat_mutex_unlock(&e->mc.m);
  return flag;
}

int mp_event_wait(mp_event *e, int timeout_ms) {
  CHECK_OBJ(e, "mp_event_wait");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc != 0)
    return rc;
  mp_plat_mutex_lock(&e->mc.m);
  while (!e->flag && rc == 0)
    rc = mp_plat_cond_wait(&e->mc.cv, &e->mc.m, deadline);
  rc = e->flag ? 0 : MP_ETIMEDOUT;
  mp_plat_mutex_unlock(&e->mc.m);
  return rc;
}

void mp_event_free(mp_event *e) {
  if (e == NULL)
    return;
  mc_destroy(&e->mc);
  free(e);
}

/* ---- Barrier ---------------------------------------------------------------------- */

/* A round ends when the last party arrives (generation advances) or when the barrier is
 * broken or reset (epoch advances): waiters tell which by comparing what they saw. */
struct mp_barrier {
  struct mc mc;
  unsigned parties, count;
  uint64_t generation, epoch;
  int broken;
};

int mp_barrier_create(mp_barrier **b, unsigned parties) {
  CHECK_OUT(b, "mp_barrier_create");
  if (parties == 0)
    return mp_set_error(MP_EINVAL, "mp_barrier_create: parties must be at least 1");
  if ((*b = mc_new(sizeof **b, "mp_barrier_create")) == NULL)
    return mp_last_error_code();
  (*b)->parties = parties;
  return 0;
}

static int barrier_broken(void) {
  return mp_set_error(MP_EBROKEN, "mp_barrier_wait: the barrier is broken");
}

int mp_barrier_wait(mp_barrier *b, int timeout_ms) {
  CHECK_OBJ(b, "mp_barrier_wait");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc != 0)
    return rc;
  mp_plat_mutex_lock(&b->mc.m);
  if (b->broken) {
    mp_plat_mutex_unlock(&b->mc.m);
    return barrier_broken();
  }
  int index = (int)b->count++;
  uint64_t gen = b->generation, epoch = b->epoch;
  if (b->count == b->parties) {
    b->count = 0;
    b->generation++;
    mp_plat_cond_broadcast(&b->mc.cv);
    mp_plat_mutex_unlock(&b->mc.m);
    return index;
  }
  while (gen == b->generation && epoch == b->epoch && rc == 0)
    rc = mp_plat_cond_wait(&b->mc.cv, &b->mc.m, deadline);
  if (gen != b->generation)
    rc = index;
  else if (epoch != b->epoch)
    rc = barrier_broken();
  else {
    /* This party gave up: nobody can complete the round any more. */
    b->broken = 1;
    b->epoch++;
    mp_plat_cond_broadcast(&b->mc.cv);
    rc = mp_set_error(MP_ETIMEDOUT, "mp_barrier_wait: timed out; the barrier is now broken");
  }
  mp_plat_mutex_unlock(&b->mc.m);
  return rc;
}

static int barrier_end_round(mp_barrier *b, int broken, const char *what) {
  CHECK_OBJ(b, what);
  mp_plat_mutex_lock(&b->mc.m);
  b->broken = broken;
  b->count = 0;
  b->epoch++;
  mp_plat_cond_broadcast(&b->mc.cv);
  mp_plat_mutex_unlock(&b->mc.m);
  return 0;
}

int mp_barrier_abort(mp_barrier *b) { return barrier_end_round(b, 1, "mp_barrier_abort"); }

int mp_barrier_reset(mp_barrier *b) { return barrier_end_round(b, 0, "mp_barrier_reset"); }

void mp_barrier_free(mp_barrier *b) {
  if (b == NULL)
    return;
  mc_destroy(&b->mc);
  free(b);
}
