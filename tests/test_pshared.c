/* Process-shared objects travelling to real children in mp_args: a robust lock, shared
 * values, shared memory, semaphores and events. Runs under fork and spawn on Linux (ctest
 * runs it twice) and under spawn on Windows. */
#include <string.h>

#include "testutil.h"

enum { WORKERS = 4, INCREMENTS = 10000, SHM_SIZE = 1 << 16 };

/* ---- targets ---------------------------------------------------------------------------- */

/* args: shared counter, plock. Increments non-atomically under the lock. */
static int increment(mp_args *a) {
  mp_shared *counter = NULL;
  mp_plock *lock = NULL;
  if (mp_args_get_shared(a, 0, &counter) || mp_args_get_plock(a, 1, &lock))
    return 90;
  int64_t *v = mp_shared_data(counter);
  for (int i = 0; i < INCREMENTS; i++) {
    if (mp_plock_acquire(lock, MP_FOREVER) != 0)
      return 91;
    int64_t x = *v; /* read, then write: only the lock makes this exact */
    *v = x + 1;
    if (mp_plock_release(lock) != 0)
      return 92;
  }
  return 0;
}

/* args: plock, pevent. Takes the lock, announces it, and waits to be killed. */
static int hold_lock_forever(mp_args *a) {
  mp_plock *lock = NULL;
  mp_pevent *held = NULL;
  if (mp_args_get_plock(a, 0, &lock) || mp_args_get_pevent(a, 1, &held))
    return 90;
  if (mp_plock_acquire(lock, MP_FOREVER) != 0)
    return 91;
  mp_pevent_set(held);
  for (;;)
    mp_sleep_ms(1000);
}

/* args: shm. Checks the parent's pattern, writes its own in the second half. */
static int check_and_answer(mp_args *a) {
  mp_shm *m = NULL;
  void *addr = NULL;
  size_t size = 0;
  if (mp_args_get_shm(a, 0, &m) || mp_shm_map(m, &addr, &size) || size < SHM_SIZE)
    return 90;
  unsigned char *p = addr;
  for (size_t i = 0; i < SHM_SIZE / 2; i++)
    if (p[i] != (unsigned char)(i * 7))
      return 91;
  for (size_t i = SHM_SIZE / 2; i < SHM_SIZE; i++)
    p[i] = (unsigned char)(i * 13);
  return 0;
}

/* args: psem, pevent. Waits for a unit, then sets the event. */
static int sem_then_event(mp_args *a) {
  mp_psem *s = NULL;
  mp_pevent *e = NULL;
  if (mp_args_get_psem(a, 0, &s) || mp_args_get_pevent(a, 1, &e))
    return 90;
  if (mp_psem_acquire(s, 60000) != 0)
    return 91;
  return mp_pevent_set(e) == 0 ? 0 : 92;
}

/* ---- helpers ------------------------------------------------------------------------ */

static mp_process *start(mp_target_fn fn, mp_args *args) {
  mp_process *p = NULL;
  assert_mp_ok(mp_process_create(&p, fn, args, NULL));
  assert_mp_ok(mp_process_start(p));
  return p;
}

static void join_ok(mp_process *p) {
  assert_mp_ok(mp_process_join(p, 120000));
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
}

/* ---- tests -------------------------------------------------------------------------- */

static void four_processes_count_exactly_under_the_lock(void **state) {
  (void)state;
  mp_shared *counter = NULL;
  mp_plock *lock = NULL;
  assert_mp_ok(mp_shared_create(&counter, MP_SHARED_INT64, 1));
  assert_mp_ok(mp_plock_create(&lock));
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_shared(a, counter));
  assert_mp_ok(mp_args_add_plock(a, lock));
  mp_process *p[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    p[i] = start(increment, a);
  for (int i = 0; i < WORKERS; i++)
    join_ok(p[i]);
  int64_t total = 0;
  assert_mp_ok(mp_shared_get_int(counter, 0, &total));
  assert_int_equal(total, WORKERS * INCREMENTS);
  mp_args_free(a);
  mp_plock_free(lock);
  mp_shared_free(counter);
}

static void a_killed_holder_hands_the_lock_on_with_ownerdead(void **state) {
  (void)state;
  mp_plock *lock = NULL;
  mp_pevent *held = NULL;
  assert_mp_ok(mp_plock_create(&lock));
  assert_mp_ok(mp_pevent_create(&held));
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_plock(a, lock));
  assert_mp_ok(mp_args_add_pevent(a, held));
  mp_process *p = start(hold_lock_forever, a);
  assert_mp_ok(mp_pevent_wait(held, 60000));
  assert_mp(MP_ETIMEDOUT, mp_plock_acquire(lock, 50)); /* really held by the child */
  assert_mp_ok(mp_process_kill(p));
  assert_mp_ok(mp_process_join(p, 60000));
  /* The next acquirer learns that the holder died, and holds a usable lock. */
  assert_mp(MP_EOWNERDEAD, mp_plock_acquire(lock, 10000));
  assert_mp_ok(mp_plock_release(lock));
  assert_mp_ok(mp_plock_acquire(lock, 0));
  assert_mp_ok(mp_plock_release(lock));
  mp_process_free(p);
  mp_args_free(a);
  mp_pevent_free(held);
  mp_plock_free(lock);
}

static void shared_memory_is_seen_both_ways(void **state) {
  (void)state;
  mp_shm *m = NULL;
  void *addr = NULL;
  size_t size = 0;
  assert_mp_ok(mp_shm_create(&m, SHM_SIZE));
  assert_mp_ok(mp_shm_map(m, &addr, &size));
  unsigned char *p = addr;
  for (size_t i = 0; i < SHM_SIZE / 2; i++)
    p[i] = (unsigned char)(i * 7);
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_shm(a, m));
  join_ok(start(check_and_answer, a));
  for (size_t i = SHM_SIZE / 2; i < SHM_SIZE; i++)
    assert_int_equal(p[i], (unsigned char)(i * 13));
  mp_args_free(a);
  mp_shm_free(m);
}

static void semaphores_and_events_cross_processes(void **state) {
  (void)state;
  mp_psem *s = NULL;
  mp_pevent *e = NULL;
  assert_mp_ok(mp_psem_create(&s, 0, 1));
  assert_mp_ok(mp_pevent_create(&e));
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_psem(a, s));
  assert_mp_ok(mp_args_add_pevent(a, e));
  mp_process *p = start(sem_then_event, a);
  assert_mp(MP_ETIMEDOUT, mp_pevent_wait(e, 100)); /* the child waits for its unit */
  assert_mp_ok(mp_psem_release(s));
  assert_mp_ok(mp_pevent_wait(e, 60000));
  join_ok(p);
  mp_args_free(a);
  mp_pevent_free(e);
  mp_psem_free(s);
}

static void objects_of_the_wrong_kind_are_refused(void **state) {
  (void)state;
  mp_plock *lock = NULL;
  assert_mp_ok(mp_plock_create(&lock));
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_plock(a, lock));
  mp_shm *m = NULL;
  assert_mp(MP_EINVAL, mp_args_get_shm(a, 0, &m));
  mp_conn *c = NULL;
  assert_mp(MP_EINVAL, mp_args_get_conn(a, 0, &c));
  assert_mp(MP_EINVAL, mp_args_add_plock(a, NULL));
  mp_args_free(a);
  mp_plock_free(lock);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(four_processes_count_exactly_under_the_lock),
      cmocka_unit_test(a_killed_holder_hands_the_lock_on_with_ownerdead),
      cmocka_unit_test(shared_memory_is_seen_both_ways),
      cmocka_unit_test(semaphores_and_events_cross_processes),
      cmocka_unit_test(objects_of_the_wrong_kind_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
