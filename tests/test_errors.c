/* Error codes, their names, and the thread-local detailed message. */
#include <stdio.h>
#include <string.h>

#include "platform.h"
#include "testutil.h"

static void every_code_has_a_distinct_name(void **state) {
  (void)state;
  const int codes[] = {MP_EINVAL,    MP_ENOMEM, MP_ETIMEDOUT, MP_EEMPTY,  MP_EFULL,      MP_EEOF,
                       MP_EPROTO,    MP_EAUTH,  MP_EBROKEN,   MP_ECHILD,  MP_EOS,        MP_ECLOSED,
                       MP_ECANCELED, MP_ETASK,  MP_EWORKER,   MP_EDEADLK, MP_EOWNERDEAD, MP_ENOTSUP,
                       MP_ESTATE,    MP_ENOENT, MP_EPERM,     MP_EBUSY};
  const size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++) {
    const char *name = mp_strerror(codes[i]);
    assert_non_null(name);
    assert_string_not_equal(name, "unknown error");
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(name, mp_strerror(codes[j]));
  }
  assert_string_equal(mp_strerror(MP_OK), "success");
  assert_string_equal(mp_strerror(MP_ETIMEDOUT), "timed out");
  assert_string_equal(mp_strerror(-9999), "unknown error");
  assert_string_equal(mp_strerror(12345), "unknown error");
}

static void set_error_formats_and_returns_code(void **state) {
  (void)state;
  assert_int_equal(mp_set_error(MP_EPROTO, "frame of %d bytes exceeds %s", 42, "max"), MP_EPROTO);
  assert_string_equal(mp_last_error(), "frame of 42 bytes exceeds max");
  assert_int_equal(mp_last_error_code(), MP_EPROTO);
  assert_int_equal(mp_set_error(MP_EAUTH, NULL), MP_EAUTH);
  assert_string_equal(mp_last_error(), "authentication failed");
}

static void long_messages_are_truncated_not_overflowed(void **state) {
  (void)state;
  char big[2048];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  mp_set_error(MP_EINVAL, "%s", big);
  size_t len = strlen(mp_last_error());
  assert_true(len > 100);
  assert_true(len < sizeof big - 1);
}

static void os_errors_name_the_call_and_the_os_code(void **state) {
  (void)state;
#ifdef _WIN32
  const long not_found = 2; /* ERROR_FILE_NOT_FOUND */
#else
  const long not_found = 2; /* ENOENT */
#endif
  assert_int_equal(mp__os_error_code(MP_ENOENT, not_found, "open(\"/nope\")"), MP_ENOENT);
  const char *msg = mp_last_error();
  assert_non_null(strstr(msg, "open(\"/nope\"): "));
  assert_non_null(strstr(msg, "(OS error 2)"));
  /* The OS text sits between the call and the number and is not empty. */
  assert_true(strlen(msg) > strlen("open(\"/nope\"): ") + strlen(" (OS error 2)"));
}

static void later_errors_replace_earlier_ones(void **state) {
  (void)state;
  mp_set_error(MP_EFULL, "first");
  mp_set_error(MP_EEMPTY, "second");
  assert_string_equal(mp_last_error(), "second");
  assert_int_equal(mp_last_error_code(), MP_EEMPTY);
}

static void version_matches_header(void **state) {
  (void)state;
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", MP_VERSION_MAJOR, MP_VERSION_MINOR, MP_VERSION_PATCH);
  assert_string_equal(mp_version(), want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_code_has_a_distinct_name),
      cmocka_unit_test(set_error_formats_and_returns_code),
      cmocka_unit_test(long_messages_are_truncated_not_overflowed),
      cmocka_unit_test(os_errors_name_the_call_and_the_os_code),
      cmocka_unit_test(later_errors_replace_earlier_ones),
      cmocka_unit_test(version_matches_header),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
