/* Process-shared lock, semaphore and event: robustness (a holder that dies), timeouts,
 * ownership, passing to a "child" (export, a duplicated handle, import), and on POSIX real
 * processes made with fork(): 4 processes counting under the lock, a holder killed. */
#include <string.h>
#ifndef _WIN32
#  include <signal.h>
#  include <sys/wait.h>
#  include <unistd.h>
#endif

#include "testutil.h"
#include "xfer.h"
#include "platform.h"
#include "psync.h"

/* ---- lock ------------------------------------------------------------------------- */

struct probe {
  mp_plock *lock;
  int acquire_rc, release_rc;
};

static void probe_plock(void *arg) {
  struct probe *p = arg;
  p->acquire_rc = mp_plock_acquire(p->lock, 30);
  p->release_rc = mp_plock_release(p->lock);
}

static void plock_times_out_refuses_reentry_and_strangers(void **state) {
  (void)state;
  struct probe p = {NULL, 1, 1};
  mp_thread *t;
  assert_mp_ok(mp_plock_create(&p.lock));
  assert_mp(MP_EPERM, mp_plock_release(p.lock));
  assert_mp_ok(mp_plock_acquire(p.lock, 0));
  assert_mp(MP_EDEADLK, mp_plock_acquire(p.lock, MP_FOREVER));
  assert_mp_ok(mp_thread_create(&t, probe_plock, &p, NULL));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(p.acquire_rc, MP_ETIMEDOUT);
  assert_int_equal(p.release_rc, MP_EPERM);
  assert_mp_ok(mp_plock_release(p.lock));
  assert_mp(MP_EPERM, mp_plock_release(p.lock)); /* the re-entry attempt left no level */
  mp_plock_free(p.lock);
}

static void hold_and_exit(void *arg) { mp_plock_acquire(arg, MP_FOREVER); }

/* A thread that ends holding the lock abandons it, on both systems (robust futex list /
 * WAIT_ABANDONED): the next acquirer learns it and holds a working lock. */
static void plock_abandoned_by_a_thread_is_owner_dead(void **state) {
  (void)state;
  mp_plock *l;
  mp_thread *t;
  assert_mp_ok(mp_plock_create(&l));
  assert_mp_ok(mp_thread_create(&t, hold_and_exit, l, NULL));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_mp(MP_EOWNERDEAD, mp_plock_acquire(l, 1000));
  assert_non_null(strstr(mp_last_error(), "died"));
  assert_mp_ok(mp_plock_release(l));
  assert_mp_ok(mp_plock_acquire(l, 0));
  assert_mp_ok(mp_plock_release(l));
  mp_plock_free(l);
}

/* What a spawned child does: receive its own handle (here a duplicate) and import it. */
static void *simulate_child(const mp__xfer_type *type, void *obj) {
  mp__xfer x;
  memset(&x, 0, sizeof x);
  assert_mp_ok(type->export_obj(obj, &x));
  assert_true(x.nhandles >= 1 && x.nhandles <= MP_XFER_MAX_HANDLES);
  for (size_t i = 0; i < x.nhandles; i++) {
    mp_plat_handle copy;
    assert_mp_ok(mp_plat_handle_dup(x.handles[i], &copy));
    x.handles[i] = copy;
  }
  void *imported = NULL;
  assert_mp_ok(type->import_obj(&x, &imported));
  assert_non_null(imported);
  return imported;
}

static void plock_exported_and_imported_is_the_same_lock(void **state) {
  (void)state;
  mp_plock *l;
  assert_mp_ok(mp_plock_create(&l));
  mp_plock *child = simulate_child(&mp__plock_xfer, l);
  assert_mp_ok(mp_plock_acquire(child, 0));
  /* The same mutex: this thread holds it through the other handle already. */
  assert_mp(MP_EDEADLK, mp_plock_acquire(l, 0));
  assert_mp_ok(mp_plock_release(l));
  assert_mp_ok(mp_plock_acquire(l, 0));
  assert_mp_ok(mp_plock_release(child));
  mp__plock_xfer.release_imported(child);
  /* The original outlives the child's copy. */
  assert_mp_ok(mp_plock_acquire(l, 0));
  assert_mp_ok(mp_plock_release(l));
  mp_plock_free(l);
}

static void malformed_imports_are_refused(void **state) {
  (void)state;
  mp_plock *l;
  assert_mp_ok(mp_plock_create(&l));
  mp__xfer x;
  memset(&x, 0, sizeof x);
  assert_mp_ok(mp__plock_xfer.export_obj(l, &x));
  x.blob_len = 3; /* a lock carries no data */
  assert_mp_ok(mp_plat_handle_dup(x.handles[0], &x.handles[0]));
  void *obj = NULL;
  assert_mp(MP_EPROTO, mp__plock_xfer.import_obj(&x, &obj));
  assert_null(obj);
  x.blob_len = 0;
  x.nhandles = 0;
  assert_mp(MP_EPROTO, mp__psem_xfer.import_obj(&x, &obj));
  assert_mp(MP_EPROTO, mp__pevent_xfer.import_obj(&x, &obj));
  assert_null(obj);
  mp_plock_free(l);
}

/* ---- semaphore -------------------------------------------------------------------- */

static void post_psem(void *arg) { mp_psem_release(arg); }
static void take_psem(void *arg) { mp_psem_acquire(arg, MP_FOREVER); }

static void psem_bounds_timeouts_and_wakeups(void **state) {
  (void)state;
  mp_psem *s;
  mp_thread *t;
  assert_mp(MP_EINVAL, mp_psem_create(&s, 3, 2));
  assert_mp_ok(mp_psem_create(&s, 1, 2));
  assert_mp_ok(mp_psem_release(s));
  assert_mp(MP_EINVAL, mp_psem_release(s));
  assert_non_null(strstr(mp_last_error(), "too many"));
  assert_mp_ok(mp_psem_acquire(s, 0));
  assert_mp_ok(mp_psem_acquire(s, 0));
  assert_mp(MP_ETIMEDOUT, mp_psem_acquire(s, 0));
  uint64_t start = mp_monotonic_ns();
  assert_mp(MP_ETIMEDOUT, mp_psem_acquire(s, 40));
  assert_true(mp_monotonic_ns() - start >= 40000000u);
  assert_mp_ok(mp_thread_create(&t, post_psem, s, NULL));
  assert_mp_ok(mp_psem_acquire(s, MP_FOREVER));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  /* Through an imported copy, the same counter. */
  mp_psem *child = simulate_child(&mp__psem_xfer, s);
  assert_mp_ok(mp_psem_release(child));
  assert_mp_ok(mp_psem_acquire(s, 0));
  assert_mp(MP_ETIMEDOUT, mp_psem_acquire(child, 0));
  mp__psem_xfer.release_imported(child);
  mp_psem_free(s);
  /* Unbounded: many releases are fine. */
  assert_mp_ok(mp_psem_create(&s, 0, MP_SEM_UNBOUNDED));
  for (int i = 0; i < 100; i++)
    assert_mp_ok(mp_psem_release(s));
  for (int i = 0; i < 100; i++)
    assert_mp_ok(mp_psem_acquire(s, 0));
  assert_mp(MP_ETIMEDOUT, mp_psem_acquire(s, 0));
  mp_psem_free(s);
}

/* get_value counts free units; a sleeper never makes it negative (POSIX lets sem_getvalue
 * say so) and a refused release leaves it alone. */
static void psem_get_value_counts_free_units(void **state) {
  (void)state;
  mp_psem *s;
  unsigned v = 99;
  assert_mp_ok(mp_psem_create(&s, 2, 3));
  assert_mp_ok(mp_psem_get_value(s, &v));
  assert_int_equal(v, 2);
  assert_mp_ok(mp_psem_acquire(s, 0));
  assert_mp_ok(mp_psem_get_value(s, &v));
  assert_int_equal(v, 1);
  assert_mp_ok(mp_psem_release(s));
  assert_mp_ok(mp_psem_release(s));
  assert_mp(MP_EINVAL, mp_psem_release(s));
  mp_psem *child = simulate_child(&mp__psem_xfer, s);
  assert_mp_ok(mp_psem_get_value(child, &v));
  assert_int_equal(v, 3);
  for (int i = 0; i < 3; i++)
    assert_mp_ok(mp_psem_acquire(child, 0));
  assert_mp_ok(mp_psem_get_value(s, &v));
  assert_int_equal(v, 0);
  mp_thread *t;
  assert_mp_ok(mp_thread_create(&t, take_psem, s, NULL)); /* sleeps until the release */
  mp_sleep_ms(20); /* asleep by now or not yet: the value is 0 either way */
  assert_mp_ok(mp_psem_get_value(s, &v));
  assert_int_equal(v, 0);
  assert_mp_ok(mp_psem_release(child));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_mp_ok(mp_psem_get_value(s, &v));
  assert_int_equal(v, 0);
  mp__psem_xfer.release_imported(child);
  mp_psem_free(s);
}

/* Releases made while several sleep are all taken: a release that wakes the sleepers and
 * the releases right after it (which find none announced) lose no unit. */
static void psem_units_reach_every_sleeper(void **state) {
  (void)state;
  enum { SLEEPERS = 4 };
  mp_psem *s;
  mp_thread *t[SLEEPERS];
  assert_mp_ok(mp_psem_create(&s, 0, MP_SEM_UNBOUNDED));
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < SLEEPERS; i++)
      assert_mp_ok(mp_thread_create(&t[i], take_psem, s, NULL));
    mp_sleep_ms(round % 2 ? 5 : 0); /* asleep or not yet: both must work */
    for (int i = 0; i < SLEEPERS; i++)
      assert_mp_ok(mp_psem_release(s));
    for (int i = 0; i < SLEEPERS; i++) {
      assert_mp_ok(mp_thread_join(t[i], MP_FOREVER));
      mp_thread_free(t[i]);
    }
  }
  assert_mp(MP_ETIMEDOUT, mp_psem_acquire(s, 0));
  mp_psem_free(s);
}

/* ---- event ------------------------------------------------------------------------ */

static void set_pevent(void *arg) { mp_pevent_set(arg); }

static void pevent_set_clear_wait(void **state) {
  (void)state;
  mp_pevent *e;
  mp_thread *t;
  assert_mp_ok(mp_pevent_create(&e));
  assert_int_equal(mp_pevent_is_set(e), 0);
  assert_mp(MP_ETIMEDOUT, mp_pevent_wait(e, 0));
  uint64_t start = mp_monotonic_ns();
  assert_mp(MP_ETIMEDOUT, mp_pevent_wait(e, 40));
  assert_true(mp_monotonic_ns() - start >= 40000000u);
  mp_pevent *child = simulate_child(&mp__pevent_xfer, e);
  assert_mp_ok(mp_thread_create(&t, set_pevent, child, NULL));
  assert_mp_ok(mp_pevent_wait(e, MP_FOREVER));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(mp_pevent_is_set(e), 1);
  assert_mp_ok(mp_pevent_clear(child));
  assert_int_equal(mp_pevent_is_set(e), 0);
  assert_mp(MP_ETIMEDOUT, mp_pevent_wait(e, 30)); /* a set then cleared leaves nothing */
  mp__pevent_xfer.release_imported(child);
  mp_pevent_free(e);
}

struct waiter {
  mp_pevent *e;
  int rc;
};

static void wait_pevent(void *arg) {
  struct waiter *w = arg;
  w->rc = mp_pevent_wait(w->e, 10000); /* a lost wake-up fails the test, not hangs it */
}

/* Returns once a waiter announced that it sleeps, where the backend can tell (Linux). */
static int await_sleepers(mp_pevent *e) {
  int rc;
  while ((rc = mp__pevent_sleepers(e)) == 0)
    mp_sleep_ms(1);
  return rc;
}

/* A set cleared at once still releases the waiters that were waiting, as in Python (they
 * were notified) and on Windows (a manual-reset event releases every waiting thread). */
static void pevent_set_then_clear_releases_waiters(void **state) {
  (void)state;
  enum { TRIALS = 200 }; /* the woken waiter must lose the race to the clear in some */
  for (int i = 0; i < TRIALS; i++) {
    mp_pevent *e; /* a fresh event each time: a sleeper, once announced, stays announced */
    assert_mp_ok(mp_pevent_create(&e));
    struct waiter w = {e, 1};
    mp_thread *t;
    assert_mp_ok(mp_thread_create(&t, wait_pevent, &w, NULL));
    int known = await_sleepers(e) != MP_ENOTSUP; /* Windows cannot tell that it waits yet */
    assert_mp_ok(mp_pevent_set(e));
    if (known)
      assert_mp_ok(mp_pevent_clear(e));
    assert_mp_ok(mp_thread_join(t, MP_FOREVER));
    mp_thread_free(t);
    assert_int_equal(w.rc, 0);
    assert_mp_ok(mp_pevent_clear(e));
    assert_mp(MP_ETIMEDOUT, mp_pevent_wait(e, 0)); /* a later waiter sees the clear */
    mp_pevent_free(e);
  }
}

/* One set wakes every waiter. */
static void pevent_set_wakes_every_waiter(void **state) {
  (void)state;
  enum { WAITERS = 4 };
  mp_pevent *e;
  mp_thread *t[WAITERS];
  struct waiter w[WAITERS];
  assert_mp_ok(mp_pevent_create(&e));
  for (int i = 0; i < WAITERS; i++) {
    w[i].e = e;
    w[i].rc = 1;
    assert_mp_ok(mp_thread_create(&t[i], wait_pevent, &w[i], NULL));
  }
  await_sleepers(e); /* where the backend can tell; the result is the same if not */
  assert_mp_ok(mp_pevent_set(e));
  for (int i = 0; i < WAITERS; i++) {
    assert_mp_ok(mp_thread_join(t[i], MP_FOREVER));
    mp_thread_free(t[i]);
    assert_int_equal(w[i].rc, 0);
  }
  mp_pevent_free(e);
}

static void bad_arguments_are_rejected(void **state) {
  (void)state;
  assert_mp(MP_EINVAL, mp_plock_create(NULL));
  assert_mp(MP_EINVAL, mp_plock_acquire(NULL, 0));
  assert_mp(MP_EINVAL, mp_plock_release(NULL));
  assert_mp(MP_EINVAL, mp_psem_create(NULL, 0, 0));
  assert_mp(MP_EINVAL, mp_psem_acquire(NULL, 0));
  assert_mp(MP_EINVAL, mp_psem_release(NULL));
  unsigned v;
  assert_mp(MP_EINVAL, mp_psem_get_value(NULL, &v));
  assert_mp(MP_EINVAL, mp_pevent_create(NULL));
  assert_mp(MP_EINVAL, mp_pevent_wait(NULL, 0));
  assert_mp(MP_EINVAL, mp_pevent_set(NULL));
  assert_mp(MP_EINVAL, mp_pevent_clear(NULL));
  assert_mp(MP_EINVAL, mp_pevent_is_set(NULL));
  mp_plock *l;
  assert_mp_ok(mp_plock_create(&l));
  assert_mp(MP_EINVAL, mp_plock_acquire(l, -3));
  mp_plock_free(l);
  mp_psem *s;
  assert_mp_ok(mp_psem_create(&s, 0, 0));
  assert_mp(MP_EINVAL, mp_psem_get_value(s, NULL));
  mp_psem_free(s);
  mp_plock_free(NULL);
  mp_psem_free(NULL);
  mp_pevent_free(NULL);
}

/* ---- real processes (POSIX fork; spawn tests live with the process work) ------------ */
#ifndef _WIN32
#  define PROCS 4
#  define PER_PROC 10000

static int wait_child(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return status;
}

static void four_processes_count_exactly_under_the_plock(void **state) {
  (void)state;
  mp_plock *l;
  mp_shm *m;
  void *addr;
  assert_mp_ok(mp_plock_create(&l));
  assert_mp_ok(mp_shm_create(&m, sizeof(int64_t)));
  assert_mp_ok(mp_shm_map(m, &addr, NULL));
  volatile int64_t *counter = addr;
  pid_t pids[PROCS];
  for (int p = 0; p < PROCS; p++) {
    pids[p] = fork();
    assert_true(pids[p] >= 0);
    if (pids[p] == 0) {
      for (int i = 0; i < PER_PROC; i++) {
        if (mp_plock_acquire(l, MP_FOREVER) != 0)
          _exit(2);
        int64_t v = *counter; /* loses updates unless the lock works across processes */
        *counter = v + 1;
        mp_plock_release(l);
      }
      _exit(0);
    }
  }
  for (int p = 0; p < PROCS; p++) {
    int status = wait_child(pids[p]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }
  assert_int_equal(*counter, PROCS * PER_PROC);
  mp_shm_free(m);
  mp_plock_free(l);
}

static void a_killed_holder_leaves_owner_dead_and_a_usable_lock(void **state) {
  (void)state;
  mp_plock *l;
  assert_mp_ok(mp_plock_create(&l));
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (mp_plock_acquire(l, MP_FOREVER) == 0)
      raise(SIGKILL); /* dies inside the critical section */
    _exit(3);
  }
  int status = wait_child(pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGKILL);
  assert_mp(MP_EOWNERDEAD, mp_plock_acquire(l, 5000));
  assert_mp_ok(mp_plock_release(l));
  /* Usable again, by this process and by another. */
  assert_mp_ok(mp_plock_acquire(l, 0));
  assert_mp_ok(mp_plock_release(l));
  pid = fork();
  if (pid == 0)
    _exit(mp_plock_acquire(l, 5000) == 0 && mp_plock_release(l) == 0 ? 0 : 4);
  status = wait_child(pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  mp_plock_free(l);
}

static void pevent_and_psem_work_across_fork(void **state) {
  (void)state;
  mp_pevent *go;
  mp_psem *done;
  assert_mp_ok(mp_pevent_create(&go));
  assert_mp_ok(mp_psem_create(&done, 0, 1));
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(mp_pevent_wait(go, 10000) == 0 && mp_psem_release(done) == 0 ? 0 : 5);
  assert_mp(MP_ETIMEDOUT, mp_psem_acquire(done, 20)); /* the child waits for the event */
  assert_mp_ok(mp_pevent_set(go));
  assert_mp_ok(mp_psem_acquire(done, 10000));
  int status = wait_child(pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  mp_psem_free(done);
  mp_pevent_free(go);
}
#endif

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(plock_times_out_refuses_reentry_and_strangers),
      cmocka_unit_test(plock_abandoned_by_a_thread_is_owner_dead),
      cmocka_unit_test(plock_exported_and_imported_is_the_same_lock),
      cmocka_unit_test(malformed_imports_are_refused),
      cmocka_unit_test(psem_bounds_timeouts_and_wakeups),
      cmocka_unit_test(psem_get_value_counts_free_units),
      cmocka_unit_test(psem_units_reach_every_sleeper),
      cmocka_unit_test(pevent_set_clear_wait),
      cmocka_unit_test(pevent_set_wakes_every_waiter),
      cmocka_unit_test(pevent_set_then_clear_releases_waiters),
      cmocka_unit_test(bad_arguments_are_rejected),
#ifndef _WIN32
      cmocka_unit_test(four_processes_count_exactly_under_the_plock),
      cmocka_unit_test(a_killed_holder_leaves_owner_dead_and_a_usable_lock),
      cmocka_unit_test(pevent_and_psem_work_across_fork),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
