/* The queue a manager serves: an in-process, thread-safe FIFO of values with Python's
 * queue.Queue semantics (maxsize, put/get with block and timeout, task_done/join). Every
 * call that blocks on behalf of a network client (get, put on a full queue, join) checks
 * now and then that the client is still connected, so a client that went away gives back
 * its server thread; a get checks once more just before it takes an item, and the server
 * puts an item back at the front if its reply cannot be written: a client that died while
 * waiting never swallows the next item. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "queue.h"
#include "manager.h"
#include "pickle.h"
#include "platform.h"
#include "value.h"

struct mp__squeue {
  mp_plat_mutex mu;
  mp_plat_cond not_empty, not_full, all_done;
  mp_value **items; /* a ring */
  size_t head, len, cap;
  size_t maxsize;
  size_t unfinished;
  size_t waiters; /* calls blocked right now: get, put, join (tests watch it) */
  int closed;
};

int mp__squeue_create(mp__squeue **out, size_t maxsize) {
  mp__squeue *q = calloc(1, sizeof *q);
  if (q == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory allocating a manager queue");
  int rc = mp_plat_mutex_init(&q->mu);
  if (rc == 0)
    rc = mp_plat_cond_init(&q->not_empty);
  if (rc == 0)
    rc = mp_plat_cond_init(&q->not_full);
  if (rc == 0)
    rc = mp_plat_cond_init(&q->all_done);
  if (rc < 0) {
    free(q);
    return rc;
  }
  q->maxsize = maxsize;
  *out = q;
  return 0;
}

void mp__squeue_free(mp__squeue *q) {
  if (q == NULL)
    return;
  for (size_t i = 0; i < q->len; i++)
    mp_value_free(q->items[(q->head + i) % q->cap]);
  free(q->items);
  mp_plat_cond_destroy(&q->not_empty);
  mp_plat_cond_destroy(&q->not_full);
  mp_plat_cond_destroy(&q->all_done);
  mp_plat_mutex_destroy(&q->mu);
  free(q);
}

static int reserve(mp__squeue *q) {
  if (q->len < q->cap)
    return 0;
  size_t cap = q->cap ? q->cap * 2 : 16;
  mp_value **items = malloc(cap * sizeof *items);
  if (items == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory growing a manager queue");
  for (size_t i = 0; i < q->len; i++)
    items[i] = q->items[(q->head + i) % q->cap];
  free(q->items);
  q->items = items;
  q->head = 0;
  q->cap = cap;
  return 0;
}

/* Waits on cv until deadline (-1: forever): 0 (woken; re-check), MP_ETIMEDOUT once the
 * deadline passed, MP_EBROKEN once w's client is gone (looked at every w->check_ms). */
static int wait_until(mp__squeue *q, mp_plat_cond *cv, int64_t deadline, const mp__waiter *w) {
  int64_t now = (int64_t)mp_plat_monotonic_ns(), until = deadline;
  if (deadline >= 0 && now >= deadline)
    return MP_ETIMEDOUT;
  if (w) {
    int64_t check = now + (int64_t)w->check_ms * 1000000;
    until = deadline < 0 || check < deadline ? check : deadline;
  }
  int rc = mp_plat_cond_wait(cv, &q->mu, until);
  if (w && !w->alive(w->arg))
    return MP_EBROKEN;
  return rc == MP_ETIMEDOUT && until != deadline ? 0 : rc;
}

static int gone(void) { return mp_set_error(MP_EBROKEN, "the client went away while waiting"); }

int mp__squeue_put(mp__squeue *q, mp_value *v, int timeout_ms, const mp__waiter *w) {
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc < 0)
    return rc;
  mp_plat_mutex_lock(&q->mu);
  while (!q->closed && q->maxsize > 0 && q->len >= q->maxsize && rc == 0 && timeout_ms != 0) {
    q->waiters++;
    rc = wait_until(q, &q->not_full, deadline, w);
    q->waiters--;
  }
  if (rc == MP_EBROKEN)
    rc = gone();
  else if (q->closed)
    rc = mp_set_error(MP_ECLOSED, "the manager queue is closed (the manager shut down)");
  else if (q->maxsize > 0 && q->len >= q->maxsize)
    rc = mp_set_error(MP_EFULL, "the queue is full (maxsize %zu)", q->maxsize);
  else
    rc = reserve(q);
  if (rc == 0) {
    q->items[(q->head + q->len++) % q->cap] = v;
    q->unfinished++;
    mp_plat_cond_signal(&q->not_empty);
  }
  mp_plat_mutex_unlock(&q->mu);
  return rc;
}

int mp__squeue_get(mp__squeue *q, mp_value **v, int timeout_ms, const mp__waiter *w) {
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc < 0)
    return rc;
  mp_plat_mutex_lock(&q->mu);
  while (!q->closed && q->len == 0 && rc == 0 && timeout_ms != 0) {
    q->waiters++;
    rc = wait_until(q, &q->not_empty, deadline, w);
    q->waiters--;
  }
  if (q->len > 0 && rc != MP_EBROKEN && w && !w->alive(w->arg))
    rc = MP_EBROKEN; /* do not hand an item to a client that is gone */
  if (rc == MP_EBROKEN)
    rc = gone();
  else if (q->len > 0) {
    *v = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    rc = 0;
    mp_plat_cond_signal(&q->not_full);
  } else if (q->closed)
    rc = mp_set_error(MP_ECLOSED, "the manager queue is closed (the manager shut down)");
  else
    rc = mp_set_error(MP_EEMPTY, "the queue is empty");
  mp_plat_mutex_unlock(&q->mu);
  return rc;
}

void mp__squeue_unget(mp__squeue *q, mp_value *v) {
  mp_plat_mutex_lock(&q->mu);
  if (reserve(q) == 0) {
    q->head = (q->head + q->cap - 1) % q->cap;
    q->items[q->head] = v;
    q->len++;
    mp_plat_cond_signal(&q->not_empty);
    v = NULL;
  }
  mp_plat_mutex_unlock(&q->mu);
  mp_value_free(v); /* only when out of memory */
}

size_t mp__squeue_qsize(mp__squeue *q) {
  mp_plat_mutex_lock(&q->mu);
  size_t n = q->len;
  mp_plat_mutex_unlock(&q->mu);
  return n;
}

size_t mp__squeue_maxsize(const mp__squeue *q) { return q->maxsize; }

size_t mp__squeue_waiters(mp__squeue *q) {
  mp_plat_mutex_lock(&q->mu);
  size_t n = q->waiters;
  mp_plat_mutex_unlock(&q->mu);
  return n;
}

int mp__squeue_task_done(mp__squeue *q) {
  mp_plat_mutex_lock(&q->mu);
  int rc = 0;
  if (q->unfinished == 0)
    rc = mp_set_error(MP_EINVAL, "task_done() called too many times");
  else if (--q->unfinished == 0)
    mp_plat_cond_broadcast(&q->all_done);
  mp_plat_mutex_unlock(&q->mu);
  return rc;
}

int mp__squeue_join(mp__squeue *q, int timeout_ms, const mp__waiter *w) {
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc < 0)
    return rc;
  mp_plat_mutex_lock(&q->mu);
  while (q->unfinished > 0 && !q->closed && rc == 0) {
    q->waiters++;
    rc = wait_until(q, &q->all_done, deadline, w);
    q->waiters--;
  }
  rc = rc == MP_EBROKEN     ? gone()
       : q->unfinished == 0 ? 0
       : q->closed          ? mp_set_error(MP_ECLOSED, "the manager queue is closed")
                            : mp_set_error(MP_ETIMEDOUT, "join timed out");
  mp_plat_mutex_unlock(&q->mu);
  return rc;
}

void mp__squeue_close(mp__squeue *q) {
  mp_plat_mutex_lock(&q->mu);
  q->closed = 1;
  mp_plat_cond_broadcast(&q->not_empty);
  mp_plat_cond_broadcast(&q->not_full);
  mp_plat_cond_broadcast(&q->all_done);
  mp_plat_mutex_unlock(&q->mu);
}

/* ---- the master's direct handle (mp_manager_local_queue) ------------------------------ */

/* The master's put takes exactly what a network client could: the item goes through the
 * reply's pickling and back, so a value Python could not read (an unhashable or
 * Python-equal dict key, too deep a nesting) is refused here rather than when a client
 * gets it, and the queue holds its own copy. */
static int local_put_value(void *impl, const mp_value *v, int timeout_ms) {
  void *buf = NULL;
  size_t len = 0;
  mp_value *reply = NULL, *copy = NULL;
  int rc = mp__pickle_dumps_pair("#RETURN", v, &buf, &len);
  if (rc == 0)
    rc = mp__pickle_read(buf, len, NULL, &reply);
  free(buf);
  if (rc == MP_EPROTO) {
    char why[300]; /* mp_set_error overwrites the message it would be formatting */
    snprintf(why, sizeof why, "%s", mp_last_error());
    rc = mp_set_error(MP_EINVAL, "the manager's queues cannot hold this value: %s", why);
  }
  if (rc == 0)
    rc = mp__value_take(reply, 1, &copy);
  mp_value_free(reply);
  if (rc == 0 && (rc = mp__squeue_put(impl, copy, timeout_ms, NULL)) < 0)
    mp_value_free(copy);
  return rc;
}

static int local_get_value(void *impl, mp_value **v, int timeout_ms) {
  return mp__squeue_get(impl, v, timeout_ms, NULL);
}

static int local_put(void *impl, const void *buf, size_t len, int timeout_ms) {
  mp_value *v = mp_value_bytes(buf, len);
  if (v == NULL)
    return mp_last_error_code();
  int rc = mp__squeue_put(impl, v, timeout_ms, NULL);
  if (rc < 0)
    mp_value_free(v);
  return rc;
}

int mp__value_to_bytes(mp_value *v, void **buf, size_t *len) {
  const void *p;
  size_t n;
  int rc;
  if (mp_value_get_bytes(v, &p, &n) == 0) {
    *buf = malloc(n ? n : 1);
    rc = *buf ? 0 : mp_set_error(MP_ENOMEM, "out of memory");
    if (rc == 0) {
      memcpy(*buf, p, n);
      *len = n;
    }
  } else {
    rc = mp_value_encode(v, buf, len);
  }
  mp_value_free(v);
  return rc;
}

static int local_get(void *impl, void **buf, size_t *len, int timeout_ms) {
  mp_value *v = NULL;
  int rc = mp__squeue_get(impl, &v, timeout_ms, NULL);
  return rc < 0 ? rc : mp__value_to_bytes(v, buf, len);
}

static int local_qsize(void *impl, size_t *n) {
  *n = mp__squeue_qsize(impl);
  return 0;
}

static int local_empty(void *impl) { return mp__squeue_qsize(impl) == 0; }

static int local_full(void *impl) {
  mp__squeue *q = impl;
  return q->maxsize > 0 && mp__squeue_qsize(q) >= q->maxsize;
}

static int local_task_done(void *impl) { return mp__squeue_task_done(impl); }
static int local_join(void *impl, int timeout_ms) {
  return mp__squeue_join(impl, timeout_ms, NULL);
}
static void local_free(void *impl) { (void)impl; /* the manager owns the queue */ }

static const mp__queue_ops local_ops = {"manager's local queue",
                                        local_put,
                                        local_get,
                                        local_put_value,
                                        local_get_value,
                                        local_qsize,
                                        local_empty,
                                        local_full,
                                        NULL,
                                        local_task_done,
                                        local_join,
                                        local_free,
                                        NULL};

int mp__squeue_local(mp__squeue *q, mp_queue **out) { return mp__queue_wrap(out, &local_ops, q); }
