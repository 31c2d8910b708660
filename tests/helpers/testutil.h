/* Shared by every test program: cmocka plus a few assertions about multiproc results. */
#ifndef MP_TESTUTIL_H
#define MP_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "multiproc.h"

/* Asserts that a multiproc call returned `want`; on mismatch prints both codes' names and
 * the thread's detailed error message. */
#define assert_mp(want, call)                                                                      \
  do {                                                                                             \
    int mp_got_ = (call);                                                                          \
    if (mp_got_ != (want))                                                                         \
      mp_test_fail_code(#call, (want), mp_got_, __FILE__, __LINE__);                               \
  } while (0)

#define assert_mp_ok(call) assert_mp(0, call)

void mp_test_fail_code(const char *expr, int want, int got, const char *file, int line);

#endif
