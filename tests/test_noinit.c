/* A program whose main() forgets mp_init: spawning itself must fail with a clear error in
 * the parent instead of running main twice, whether the child exits or hangs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int never_runs(mp_args *a) {
  (void)a;
  return 0;
}

static mp_process *spawn_child(int timeout_ms) {
  mp_process_opts o;
  memset(&o, 0, sizeof o);
  o.method = MP_START_SPAWN;
  o.start_timeout_ms = timeout_ms;
  mp_process *p = NULL;
  assert_mp_ok(mp_process_create(&p, never_runs, NULL, &o));
  return p;
}

static void a_child_that_runs_main_again_is_stopped(void **state) {
  (void)state;
  int before = mp_test_open_handles();
  mp_process *p = spawn_child(60000);
  /* The child re-runs this main, reaches mp_process_start, sees it was spawned without
   * mp_init, and exits with an explanation instead of spawning again. */
  assert_mp(MP_ECHILD, mp_process_start(p));
  assert_non_null(strstr(mp_last_error(), "before calling mp_init"));
  assert_non_null(strstr(mp_last_error(), "121"));
  assert_int_equal(mp_process_pid(p), 0);
  mp_process_free(p);
  assert_int_equal(mp_test_open_handles(), before);
}

static void a_child_that_never_reaches_mp_init_times_out(void **state) {
  (void)state;
  int before = mp_test_open_handles();
  mp_process *p = spawn_child(1500);
  putenv("MP_TEST_NOINIT_HANG=1"); /* inherited by the child: its main blocks */
  uint64_t t0 = mp_monotonic_ns();
  assert_mp(MP_ECHILD, mp_process_start(p));
  uint64_t ms = (mp_monotonic_ns() - t0) / 1000000u;
  putenv("MP_TEST_NOINIT_HANG=");
  assert_non_null(strstr(mp_last_error(), "did not call mp_init within 1500 ms"));
  assert_true(ms >= 1400 && ms < 30000);
  mp_process_free(p);
  assert_int_equal(mp_test_open_handles(), before); /* the child was killed and reaped */
}

int main(void) {
  const char *hang = getenv("MP_TEST_NOINIT_HANG");
  if (hang && hang[0] == '1') {
    mp_sleep_ms(120000); /* a child whose main never gets to spawning */
    return 0;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_child_that_runs_main_again_is_stopped),
      cmocka_unit_test(a_child_that_never_reaches_mp_init_times_out),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
