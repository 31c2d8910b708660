/* In-process locks: Lock under contention, try/timeout paths, RLock levels, Condition
 * producer/consumer and FIFO notify, Semaphore bounds, Event, Barrier, bad arguments. */
#include <string.h>

#include "testutil.h"

#define WORKERS 4
#define ROUNDS 100000

/* ---- Lock ------------------------------------------------------------------------- */

struct counter {
  mp_lock *lock;
  volatile long value;
};

static void add_many(void *arg) {
  struct counter *c = arg;
  for (int i = 0; i < ROUNDS; i++) {
    mp_lock_acquire(c->lock, MP_FOREVER);
    long v = c->value; /* a read-modify-write that loses updates without the lock */
    c->value = v + 1;
    mp_lock_release(c->lock);
  }
}

static void lock_keeps_a_counter_exact_under_contention(void **state) {
  (void)state;
  struct counter c = {NULL, 0};
  mp_thread *t[WORKERS];
  assert_mp_ok(mp_lock_create(&c.lock));
  for (int i = 0; i < WORKERS; i++)
    assert_mp_ok(mp_thread_create(&t[i], add_many, &c, NULL));
  for (int i = 0; i < WORKERS; i++) {
    assert_mp_ok(mp_thread_join(t[i], MP_FOREVER));
    mp_thread_free(t[i]);
  }
  assert_int_equal(c.value, WORKERS * ROUNDS);
  assert_int_equal(mp_lock_locked(c.lock), 0);
  mp_lock_free(c.lock);
}

struct try_result {
  mp_lock *lock;
  int poll_rc, timed_rc;
  uint64_t waited_ns;
};

static void try_held_lock(void *arg) {
  struct try_result *r = arg;
  r->poll_rc = mp_lock_acquire(r->lock, 0);
  uint64_t start = mp_monotonic_ns();
  r->timed_rc = mp_lock_acquire(r->lock, 50);
  r->waited_ns = mp_monotonic_ns() - start;
}

static void release_it(void *arg) { mp_lock_release(arg); }

static void lock_try_timeout_and_foreign_release(void **state) {
  (void)state;
  struct try_result r = {NULL, 1, 1, 0};
  mp_thread *t;
  assert_mp_ok(mp_lock_create(&r.lock));
  assert_mp_ok(mp_lock_acquire(r.lock, 0));
  assert_int_equal(mp_lock_locked(r.lock), 1);
  assert_mp_ok(mp_thread_create(&t, try_held_lock, &r, NULL));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(r.poll_rc, MP_ETIMEDOUT);
  assert_int_equal(r.timed_rc, MP_ETIMEDOUT);
  assert_true(r.waited_ns >= 50000000u);
#ifndef NDEBUG
  /* Debug builds of the library (this test is built with the same flags) catch the
   * holder's re-acquire at once, whatever the timeout (docs/sync.md). */
  assert_mp(MP_EDEADLK, mp_lock_acquire(r.lock, MP_FOREVER));
  assert_non_null(strstr(mp_last_error(), "already holds"));
  assert_mp(MP_EDEADLK, mp_lock_acquire(r.lock, 20));
#else
  /* Release builds have no self-check: the holder's re-acquire waits like anyone's, so a
   * timed one times out and the lock stays held (MP_FOREVER would wait for good). */
  assert_mp(MP_ETIMEDOUT, mp_lock_acquire(r.lock, 20));
#endif
  assert_int_equal(mp_lock_locked(r.lock), 1);
  /* Like threading.Lock, any thread may release it. */
  assert_mp_ok(mp_thread_create(&t, release_it, r.lock, NULL));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(mp_lock_locked(r.lock), 0);
  assert_mp(MP_ESTATE, mp_lock_release(r.lock));
  assert_mp_ok(mp_lock_acquire(r.lock, 0)); /* still usable after the error */
  assert_mp_ok(mp_lock_release(r.lock));
  mp_lock_free(r.lock);
}

struct handoff {
  mp_lock *lock;
  mp_event *waiting;
  int rc;
};

static void block_on_lock(void *arg) {
  struct handoff *h = arg;
  mp_event_set(h->waiting);
  h->rc = mp_lock_acquire(h->lock, MP_FOREVER);
  mp_lock_release(h->lock);
}

static void a_release_wakes_a_blocked_acquirer(void **state) {
  (void)state;
  struct handoff h = {NULL, NULL, 1};
  mp_thread *t;
  assert_mp_ok(mp_lock_create(&h.lock));
  assert_mp_ok(mp_event_create(&h.waiting));
  assert_mp_ok(mp_lock_acquire(h.lock, MP_FOREVER));
  assert_mp_ok(mp_thread_create(&t, block_on_lock, &h, NULL));
  assert_mp_ok(mp_event_wait(h.waiting, MP_FOREVER));
  assert_mp_ok(mp_lock_release(h.lock));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(h.rc, 0);
  mp_event_free(h.waiting);
  mp_lock_free(h.lock);
}

/* ---- RLock ------------------------------------------------------------------------ */

struct rlock_probe {
  mp_rlock *lock;
  int level, acquire_rc, release_rc;
};

static void probe_rlock(void *arg) {
  struct rlock_probe *p = arg;
  p->level = mp_rlock_level(p->lock);
  p->acquire_rc = mp_rlock_acquire(p->lock, 20);
  p->release_rc = mp_rlock_release(p->lock);
}

static void rlock_counts_levels_and_belongs_to_its_owner(void **state) {
  (void)state;
  struct rlock_probe p = {NULL, -1, 1, 1};
  mp_thread *t;
  assert_mp_ok(mp_rlock_create(&p.lock));
  assert_int_equal(mp_rlock_level(p.lock), 0);
  for (int i = 1; i <= 3; i++) {
    assert_mp_ok(mp_rlock_acquire(p.lock, 0));
    assert_int_equal(mp_rlock_level(p.lock), i);
  }
  assert_mp_ok(mp_thread_create(&t, probe_rlock, &p, NULL));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(p.level, 0);
  assert_int_equal(p.acquire_rc, MP_ETIMEDOUT);
  assert_int_equal(p.release_rc, MP_EPERM);
  for (int i = 2; i >= 0; i--) {
    assert_mp_ok(mp_rlock_release(p.lock));
    assert_int_equal(mp_rlock_level(p.lock), i);
  }
  assert_mp(MP_EPERM, mp_rlock_release(p.lock));
  /* Free again: another thread takes it at once. */
  p.acquire_rc = 1;
  assert_mp_ok(mp_thread_create(&t, probe_rlock, &p, NULL));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(p.acquire_rc, 0);
  assert_int_equal(p.release_rc, 0);
  mp_rlock_free(p.lock);
}

/* ---- Condition -------------------------------------------------------------------- */

#define QCAP 8
#define ITEMS 2000

struct queue {
  mp_cond *cond;
  int items[QCAP];
  int head, count, produced_done;
  long long sum;
  int consumed;
};

static void produce(void *arg) {
  struct queue *q = arg;
  mp_lock *l = mp_cond_lock(q->cond);
  for (int i = 1; i <= ITEMS; i++) {
    mp_lock_acquire(l, MP_FOREVER);
    while (q->count == QCAP)
      mp_cond_wait(q->cond, MP_FOREVER);
    q->items[(q->head + q->count++) % QCAP] = i;
    mp_cond_notify_all(q->cond);
    mp_lock_release(l);
  }
}

static void consume(void *arg) {
  struct queue *q = arg;
  mp_lock *l = mp_cond_lock(q->cond);
  mp_lock_acquire(l, MP_FOREVER);
  for (;;) {
    while (q->count == 0 && q->consumed < 2 * ITEMS)
      mp_cond_wait(q->cond, MP_FOREVER);
    if (q->count == 0)
      break;
    q->sum += q->items[q->head];
    q->head = (q->head + 1) % QCAP;
    q->count--;
    q->consumed++;
    mp_cond_notify_all(q->cond);
  }
  mp_lock_release(l);
}

static void condition_carries_items_from_producers_to_consumers(void **state) {
  (void)state;
  struct queue q;
  memset(&q, 0, sizeof q);
  mp_thread *t[4];
  assert_mp_ok(mp_cond_create(&q.cond, NULL));
  assert_mp_ok(mp_thread_create(&t[0], consume, &q, NULL));
  assert_mp_ok(mp_thread_create(&t[1], consume, &q, NULL));
  assert_mp_ok(mp_thread_create(&t[2], produce, &q, NULL));
  assert_mp_ok(mp_thread_create(&t[3], produce, &q, NULL));
  for (int i = 0; i < 4; i++) {
    assert_mp_ok(mp_thread_join(t[i], MP_FOREVER));
    mp_thread_free(t[i]);
  }
  assert_int_equal(q.consumed, 2 * ITEMS);
  assert_int_equal(q.sum, 2LL * ITEMS * (ITEMS + 1) / 2);
  mp_cond_free(q.cond);
}

struct fifo {
  mp_cond *cond;     /* the condition under test */
  mp_cond *progress; /* same lock: tells the test thread that a counter moved */
  mp_lock *lock;
  int waiting;
  int order[3], woken;
};

struct fifo_arg {
  struct fifo *f;
  int id;
};

static void fifo_waiter(void *arg) {
  struct fifo_arg *a = arg;
  struct fifo *f = a->f;
  mp_lock_acquire(f->lock, MP_FOREVER);
  f->waiting++;
  mp_cond_notify_all(f->progress);
  mp_cond_wait(f->cond, MP_FOREVER);
  f->order[f->woken++] = a->id;
  mp_cond_notify_all(f->progress);
  mp_lock_release(f->lock);
}

/* Waits until *field reaches want; the lock is held on return. */
static void wait_until(struct fifo *f, int *field, int want) {
  mp_lock_acquire(f->lock, MP_FOREVER);
  while (*field < want)
    mp_cond_wait(f->progress, MP_FOREVER);
}

static void notify_wakes_the_longest_waiting_first(void **state) {
  (void)state;
  struct fifo f;
  memset(&f, 0, sizeof f);
  struct fifo_arg args[3];
  mp_thread *t[3];
  assert_mp_ok(mp_lock_create(&f.lock));
  assert_mp_ok(mp_cond_create(&f.cond, f.lock));
  assert_mp_ok(mp_cond_create(&f.progress, f.lock));
  assert_ptr_equal(mp_cond_lock(f.cond), f.lock);
  for (int i = 0; i < 3; i++) {
    args[i].f = &f;
    args[i].id = i;
    assert_mp_ok(mp_thread_create(&t[i], fifo_waiter, &args[i], NULL));
    /* A waiter counted under the lock is queued: it released the lock only in wait. */
    wait_until(&f, &f.waiting, i + 1);
    assert_mp_ok(mp_lock_release(f.lock));
  }
  for (int i = 0; i < 3; i++) {
    assert_mp_ok(mp_lock_acquire(f.lock, MP_FOREVER));
    assert_mp_ok(mp_cond_notify(f.cond, 1));
    assert_mp_ok(mp_lock_release(f.lock));
    wait_until(&f, &f.woken, i + 1);
    assert_int_equal(f.woken, i + 1); /* exactly one more woke */
    assert_int_equal(f.order[i], i);  /* the one that waited longest */
    assert_mp_ok(mp_lock_release(f.lock));
  }
  for (int i = 0; i < 3; i++) {
    assert_mp_ok(mp_thread_join(t[i], MP_FOREVER));
    mp_thread_free(t[i]);
  }
  assert_int_equal(f.woken, 3);
  mp_cond_free(f.progress);
  mp_cond_free(f.cond);
  mp_lock_free(f.lock);
}

static void condition_wait_times_out_and_checks_the_lock(void **state) {
  (void)state;
  mp_cond *c;
  assert_mp_ok(mp_cond_create(&c, NULL));
  assert_mp(MP_ESTATE, mp_cond_wait(c, 10));
  assert_mp(MP_ESTATE, mp_cond_notify(c, 1));
  assert_mp(MP_ESTATE, mp_cond_notify_all(c));
  assert_mp_ok(mp_lock_acquire(mp_cond_lock(c), MP_FOREVER));
  uint64_t start = mp_monotonic_ns();
  assert_mp(MP_ETIMEDOUT, mp_cond_wait(c, 30));
  assert_true(mp_monotonic_ns() - start >= 30000000u);
  assert_int_equal(mp_lock_locked(mp_cond_lock(c)), 1); /* re-acquired after the timeout */
  assert_mp_ok(mp_cond_notify(c, 5));                   /* nobody waits: nothing happens */
  assert_mp(MP_EINVAL, mp_cond_notify(c, -1));
  assert_mp(MP_EINVAL, mp_cond_wait(c, -7));
  assert_mp_ok(mp_lock_release(mp_cond_lock(c)));
  mp_cond_free(c);
}

/* ---- Semaphore -------------------------------------------------------------------- */

static void bounded_semaphore_refuses_extra_releases(void **state) {
  (void)state;
  mp_sem *s;
  assert_mp(MP_EINVAL, mp_sem_create(&s, 3, 2));
  assert_mp_ok(mp_sem_create(&s, 2, 2));
  assert_mp(MP_EINVAL, mp_sem_release(s));
  assert_non_null(strstr(mp_last_error(), "maxvalue 2"));
  assert_mp_ok(mp_sem_acquire(s, 0));
  assert_mp_ok(mp_sem_acquire(s, 0));
  assert_int_equal(mp_sem_value(s), 0);
  assert_mp(MP_ETIMEDOUT, mp_sem_acquire(s, 0));
  assert_mp(MP_ETIMEDOUT, mp_sem_acquire(s, 20));
  assert_mp_ok(mp_sem_release(s));
  assert_mp_ok(mp_sem_release(s));
  assert_int_equal(mp_sem_value(s), 2);
  assert_mp(MP_EINVAL, mp_sem_release(s));
  assert_int_equal(mp_sem_value(s), 2);
  mp_sem_free(s);
}

static void post_sem(void *arg) { mp_sem_release(arg); }

static void unbounded_semaphore_counts_and_wakes(void **state) {
  (void)state;
  mp_sem *s;
  mp_thread *t;
  assert_mp_ok(mp_sem_create(&s, 0, MP_SEM_UNBOUNDED));
  for (int i = 0; i < 5; i++)
    assert_mp_ok(mp_sem_release(s));
  assert_int_equal(mp_sem_value(s), 5);
  for (int i = 0; i < 5; i++)
    assert_mp_ok(mp_sem_acquire(s, 0));
  assert_mp_ok(mp_thread_create(&t, post_sem, s, NULL));
  assert_mp_ok(mp_sem_acquire(s, MP_FOREVER));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(mp_sem_value(s), 0);
  mp_sem_free(s);
}

/* ---- Event ------------------------------------------------------------------------ */

static void set_event(void *arg) { mp_event_set(arg); }

static void event_wakes_waiters_and_clears(void **state) {
  (void)state;
  mp_event *e;
  mp_thread *t;
  assert_mp_ok(mp_event_create(&e));
  assert_int_equal(mp_event_is_set(e), 0);
  assert_mp(MP_ETIMEDOUT, mp_event_wait(e, 0));
  assert_mp(MP_ETIMEDOUT, mp_event_wait(e, 20));
  assert_mp_ok(mp_thread_create(&t, set_event, e, NULL));
  assert_mp_ok(mp_event_wait(e, MP_FOREVER));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(mp_event_is_set(e), 1);
  assert_mp_ok(mp_event_wait(e, 0));
  assert_mp_ok(mp_event_clear(e));
  assert_int_equal(mp_event_is_set(e), 0);
  assert_mp(MP_ETIMEDOUT, mp_event_wait(e, 0));
  mp_event_free(e);
}

/* ---- Barrier ---------------------------------------------------------------------- */

struct barrier_run {
  mp_barrier *b;
  int rc[WORKERS][2];
  int slot;
  mp_lock *lock;
};

static void pass_barrier_twice(void *arg) {
  struct barrier_run *r = arg;
  mp_lock_acquire(r->lock, MP_FOREVER);
  int me = r->slot++;
  mp_lock_release(r->lock);
  r->rc[me][0] = mp_barrier_wait(r->b, 10000);
  r->rc[me][1] = mp_barrier_wait(r->b, 10000);
}

static void barrier_releases_all_parties_with_distinct_indices(void **state) {
  (void)state;
  struct barrier_run r;
  memset(&r, 0, sizeof r);
  mp_thread *t[WORKERS];
  assert_mp_ok(mp_barrier_create(&r.b, WORKERS));
  assert_mp_ok(mp_lock_create(&r.lock));
  for (int i = 0; i < WORKERS; i++)
    assert_mp_ok(mp_thread_create(&t[i], pass_barrier_twice, &r, NULL));
  for (int i = 0; i < WORKERS; i++) {
    assert_mp_ok(mp_thread_join(t[i], MP_FOREVER));
    mp_thread_free(t[i]);
  }
  for (int round = 0; round < 2; round++) {
    int seen[WORKERS] = {0};
    for (int i = 0; i < WORKERS; i++) {
      assert_in_range(r.rc[i][round], 0, WORKERS - 1);
      seen[r.rc[i][round]]++;
    }
    for (int i = 0; i < WORKERS; i++)
      assert_int_equal(seen[i], 1);
  }
  mp_lock_free(r.lock);
  mp_barrier_free(r.b);
}

struct broken_wait {
  mp_barrier *b;
  mp_event *arrived;
  int rc;
};

static void wait_on_barrier(void *arg) {
  struct broken_wait *w = arg;
  mp_event_set(w->arrived);
  w->rc = mp_barrier_wait(w->b, MP_FOREVER);
}

static void barrier_timeout_abort_and_reset(void **state) {
  (void)state;
  mp_barrier *b;
  assert_mp(MP_EINVAL, mp_barrier_create(&b, 0));
  assert_mp_ok(mp_barrier_create(&b, 2));
  assert_mp(MP_ETIMEDOUT, mp_barrier_wait(b, 20));
  assert_mp(MP_EBROKEN, mp_barrier_wait(b, 20));
  assert_mp_ok(mp_barrier_reset(b));
  /* A waiter inside when the barrier is aborted gets MP_EBROKEN. */
  struct broken_wait w = {b, NULL, 1};
  mp_thread *t;
  assert_mp_ok(mp_event_create(&w.arrived));
  assert_mp_ok(mp_thread_create(&t, wait_on_barrier, &w, NULL));
  assert_mp_ok(mp_event_wait(w.arrived, MP_FOREVER));
  /* The waiter may not be inside the barrier yet: abort breaks it either way. */
  assert_mp_ok(mp_barrier_abort(b));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(w.rc, MP_EBROKEN);
  assert_mp_ok(mp_barrier_reset(b));
  /* Usable again: one party of two plus this thread. */
  w.rc = 99;
  mp_event_clear(w.arrived);
  assert_mp_ok(mp_thread_create(&t, wait_on_barrier, &w, NULL));
  int mine = mp_barrier_wait(b, 10000);
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_in_range(mine, 0, 1);
  assert_int_equal(w.rc + mine, 1);
  mp_event_free(w.arrived);
  mp_barrier_free(b);
}

static void bad_arguments_are_rejected(void **state) {
  (void)state;
  assert_mp(MP_EINVAL, mp_lock_create(NULL));
  assert_mp(MP_EINVAL, mp_lock_acquire(NULL, 0));
  assert_mp(MP_EINVAL, mp_lock_release(NULL));
  assert_mp(MP_EINVAL, mp_rlock_create(NULL));
  assert_mp(MP_EINVAL, mp_rlock_acquire(NULL, 0));
  assert_mp(MP_EINVAL, mp_rlock_release(NULL));
  assert_mp(MP_EINVAL, mp_cond_create(NULL, NULL));
  assert_mp(MP_EINVAL, mp_cond_wait(NULL, 0));
  assert_mp(MP_EINVAL, mp_cond_notify(NULL, 1));
  assert_mp(MP_EINVAL, mp_sem_create(NULL, 0, 0));
  assert_mp(MP_EINVAL, mp_sem_acquire(NULL, 0));
  assert_mp(MP_EINVAL, mp_sem_release(NULL));
  assert_mp(MP_EINVAL, mp_event_create(NULL));
  assert_mp(MP_EINVAL, mp_event_wait(NULL, 0));
  assert_mp(MP_EINVAL, mp_event_set(NULL));
  assert_mp(MP_EINVAL, mp_barrier_create(NULL, 2));
  assert_mp(MP_EINVAL, mp_barrier_wait(NULL, 0));
  mp_lock *l;
  assert_mp_ok(mp_lock_create(&l));
  assert_mp(MP_EINVAL, mp_lock_acquire(l, -2));
  assert_non_null(strstr(mp_last_error(), "MP_FOREVER"));
  assert_mp_ok(mp_lock_acquire(l, 0));
  assert_mp_ok(mp_lock_release(l));
  mp_lock_free(l);
  mp_lock_free(NULL);
  mp_rlock_free(NULL);
  mp_cond_free(NULL);
  mp_sem_free(NULL);
  mp_event_free(NULL);
  mp_barrier_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(lock_keeps_a_counter_exact_under_contention),
      cmocka_unit_test(lock_try_timeout_and_foreign_release),
      cmocka_unit_test(a_release_wakes_a_blocked_acquirer),
      cmocka_unit_test(rlock_counts_levels_and_belongs_to_its_owner),
      cmocka_unit_test(condition_carries_items_from_producers_to_consumers),
      cmocka_unit_test(notify_wakes_the_longest_waiting_first),
      cmocka_unit_test(condition_wait_times_out_and_checks_the_lock),
      cmocka_unit_test(bounded_semaphore_refuses_extra_releases),
      cmocka_unit_test(unbounded_semaphore_counts_and_wakes),
      cmocka_unit_test(event_wakes_waiters_and_clears),
      cmocka_unit_test(barrier_releases_all_parties_with_distinct_indices),
      cmocka_unit_test(barrier_timeout_abort_and_reset),
      cmocka_unit_test(bad_arguments_are_rejected),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
