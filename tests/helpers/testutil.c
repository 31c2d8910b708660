#include "testutil.h"

#include <stdio.h>

void mp_test_fail_code(const char *expr, int want, int got, const char *file, int line) {
  print_error("%s returned %d (%s), expected %d (%s); last error: %s\n", expr, got,
              mp_strerror(got), want, mp_strerror(want), mp_last_error());
  _fail(file, line);
}
