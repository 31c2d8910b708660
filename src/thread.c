/* Threads in the manner of threading.Thread: a name ("Thread-N" by default, "MainThread"
 * for the main thread), join with a timeout, detach; the CPU count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "deadline.h"
#include "platform.h"

struct mp_thread {
  mp_plat_thread *pt; /* NULL once reaped */
  int waiters;        /* joins waiting on pt outside the lock: pt is reaped by the last */
  int64_t serial;     /* unique per thread ever started: lets a thread recognise itself */
  mp_plat_mutex lock; /* guards pt and waiters; never held while waiting */
  char name[MP_THREAD_NAME_MAX + 1];
};

/* What the new thread needs; it owns this and frees it, so that the caller may detach
 * or free its mp_thread before the thread even starts. */
struct start {
  int64_t serial;
  mp_thread_fn fn;
  void *arg;
  char name[MP_THREAD_NAME_MAX + 1];
};

static int64_t thread_counter, dummy_counter, serial_counter;
static MP_THREAD_LOCAL int64_t current_serial;
/* The calling thread's name, copied in so that it outlives any mp_thread record. */
static MP_THREAD_LOCAL char current_name[MP_THREAD_NAME_MAX + 1];

static void trampoline(void *p) {
  struct start *s = p;
  memcpy(current_name, s->name, sizeof current_name);
  current_serial = s->serial;
  mp_plat_thread_set_os_name(s->name);
  mp_thread_fn fn = s->fn;
  void *arg = s->arg;
  free(s);
  fn(arg);
}

int mp_thread_create(mp_thread **out, mp_thread_fn fn, void *arg, const char *name) {
  if (out == NULL || fn == NULL)
    return mp_set_error(MP_EINVAL, "mp_thread_create: %s is NULL", out ? "fn" : "the output");
  if (name != NULL && strlen(name) > MP_THREAD_NAME_MAX)
    return mp_set_error(MP_EINVAL, "mp_thread_create: the name is longer than %d bytes",
                        MP_THREAD_NAME_MAX);
  mp_thread *t = calloc(1, sizeof *t);
  struct start *s = calloc(1, sizeof *s);
  int rc = t && s ? mp_plat_mutex_init(&t->lock)
                  : mp_set_error(MP_ENOMEM, "mp_thread_create: out of memory");
  if (rc != 0) {
    free(t);
    free(s);
    return rc;
  }
  if (name != NULL)
    snprintf(t->name, sizeof t->name, "%s", name);
  else
    snprintf(t->name, sizeof t->name, "Thread-%ld", (long)mp_plat_atomic_add(&thread_counter, 1));
  memcpy(s->name, t->name, sizeof s->name);
  t->serial = s->serial = mp_plat_atomic_add(&serial_counter, 1);
  s->fn = fn;
  s->arg = arg;
  if ((rc = mp_plat_thread_start(&t->pt, trampoline, s)) != 0) {
    mp_plat_mutex_destroy(&t->lock);
    free(t);
    free(s);
    return rc;
  }
  *out = t;
  return 0;
}

/* Releases the OS thread once it has ended and no join still waits on it; holds t->lock.
 * (With several joins at once, only the last one also waits out the exit destructors.) */
static void reap_if_ended(mp_thread *t, int wait_rc) {
  if (wait_rc == 0 && t->pt != NULL && t->waiters == 0) {
    mp_plat_thread_reap(t->pt);
    t->pt = NULL;
  }
}

int mp_thread_join(mp_thread *t, int timeout_ms) {
  if (t == NULL)
    return mp_set_error(MP_EINVAL, "mp_thread_join: the thread is NULL");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc != 0)
    return rc;
  /* A thread waiting for its own end would wait forever. */
  if (t->serial == current_serial)
    return mp_set_error(MP_EDEADLK, "mp_thread_join: a thread cannot join itself");
  mp_plat_mutex_lock(&t->lock);
  mp_plat_thread *pt = t->pt;
  if (pt != NULL)
    t->waiters++;
  mp_plat_mutex_unlock(&t->lock);
  if (pt == NULL)
    return 0;
  rc = mp_plat_thread_wait(pt, deadline);
  mp_plat_mutex_lock(&t->lock);
  t->waiters--;
  reap_if_ended(t, rc);
  mp_plat_mutex_unlock(&t->lock);
  if (rc == MP_ETIMEDOUT)
    return mp_set_error(rc, "mp_thread_join: '%s' is still running", t->name);
  return rc;
}

int mp_thread_is_alive(mp_thread *t) {
  if (t == NULL)
    return mp_set_error(MP_EINVAL, "mp_thread_is_alive: the thread is NULL");
  mp_plat_mutex_lock(&t->lock);
  int alive = t->pt != NULL && mp_plat_thread_wait(t->pt, 0) != 0;
  reap_if_ended(t, alive ? MP_ETIMEDOUT : 0);
  mp_plat_mutex_unlock(&t->lock);
  return alive;
}

int mp_thread_detach(mp_thread *t) {
  if (t == NULL)
    return mp_set_error(MP_EINVAL, "mp_thread_detach: the thread is NULL");
  mp_thread_free(t);
  return 0;
}

void mp_thread_free(mp_thread *t) {
  if (t == NULL)
    return;
  if (t->pt != NULL)
    mp_plat_thread_detach(t->pt);
  mp_plat_mutex_destroy(&t->lock);
  free(t);
}

const char *mp_thread_name(const mp_thread *t) { return t == NULL ? "" : t->name; }

const char *mp_thread_current_name(void) {
  if (current_name[0] == '\0') {
    /* Not started by mp_thread_create: the main thread, or a foreign thread. */
    if (mp_plat_thread_is_main())
      return "MainThread";
    snprintf(current_name, sizeof current_name, "Dummy-%ld",
             (long)mp_plat_atomic_add(&dummy_counter, 1));
  }
  return current_name;
}

uint64_t mp_thread_id(void) { return mp_plat_thread_id(); }

int mp_cpu_count(void) { return mp_plat_cpu_count(); }
