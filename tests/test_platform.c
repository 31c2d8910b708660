/* The first backend functions: monotonic clock, OS randomness, process identity. */
#include <string.h>

#include "testutil.h"
#include "platform.h"

static void clock_is_monotonic_and_advances(void **state) {
  (void)state;
  uint64_t first = mp_monotonic_ns();
  uint64_t prev = first;
  for (int i = 0; i < 100000; i++) {
    uint64_t now = mp_monotonic_ns();
    assert_true(now >= prev);
    prev = now;
  }
  /* 100,000 clock reads take far more than one nanosecond on any machine. */
  assert_true(prev > first);
}

static void clock_agrees_with_a_busy_wait_of_known_length(void **state) {
  (void)state;
  /* Spin until the clock says 20 ms passed, and check the platform clock (the one the
   * backend uses internally) agrees with the public one within a generous margin. */
  uint64_t start = mp_plat_monotonic_ns();
  while (mp_monotonic_ns() - start < 20000000u) {
  }
  uint64_t elapsed = mp_plat_monotonic_ns() - start;
  assert_true(elapsed >= 20000000u);
  assert_true(elapsed < 5000000000u);
}

static void random_bytes_fill_and_differ(void **state) {
  (void)state;
  unsigned char a[64], b[64], zero[64];
  memset(a, 0, sizeof a);
  memset(b, 0, sizeof b);
  memset(zero, 0, sizeof zero);
  assert_mp_ok(mp_random_bytes(a, sizeof a));
  assert_mp_ok(mp_random_bytes(b, sizeof b));
  assert_memory_not_equal(a, zero, sizeof a);
  assert_memory_not_equal(a, b, sizeof a);
}

static void random_bytes_cover_every_byte_value(void **state) {
  (void)state;
  static unsigned char buf[1 << 16];
  int seen[256] = {0};
  assert_mp_ok(mp_random_bytes(buf, sizeof buf));
  for (size_t i = 0; i < sizeof buf; i++)
    seen[buf[i]]++;
  for (int v = 0; v < 256; v++) {
    /* Expectation 256 per value; below 128 or above 400 means the source is broken. */
    assert_in_range(seen[v], 128, 400);
  }
}

static void random_bytes_rejects_null(void **state) {
  (void)state;
  assert_mp(MP_EINVAL, mp_random_bytes(NULL, 4));
  assert_non_null(strstr(mp_last_error(), "NULL"));
  assert_mp_ok(mp_random_bytes(NULL, 0));
}

static void pids_are_positive_and_stable(void **state) {
  (void)state;
  int64_t pid = mp_getpid();
  assert_true(pid > 0);
  assert_int_equal(pid, mp_plat_getpid());
  assert_int_equal(pid, mp_getpid());
  /* Under Wine a test started from Linux has no Windows parent, so 0 is allowed there;
   * tests/test_process.c checks a child's parent id against the real parent. */
  int64_t ppid = mp_plat_getppid();
  assert_true(ppid >= 0);
  assert_int_not_equal(ppid, pid);
}

static void os_error_text_is_readable(void **state) {
  (void)state;
  char buf[128];
  mp_plat_os_error_text(2, buf, sizeof buf);
  assert_true(strlen(buf) > 3);
  /* A tiny buffer is truncated and stays NUL-terminated. */
  char tiny[4];
  mp_plat_os_error_text(2, tiny, sizeof tiny);
  assert_true(strlen(tiny) < sizeof tiny);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(clock_is_monotonic_and_advances),
      cmocka_unit_test(clock_agrees_with_a_busy_wait_of_known_length),
      cmocka_unit_test(random_bytes_fill_and_differ),
      cmocka_unit_test(random_bytes_cover_every_byte_value),
      cmocka_unit_test(random_bytes_rejects_null),
      cmocka_unit_test(pids_are_positive_and_stable),
      cmocka_unit_test(os_error_text_is_readable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
