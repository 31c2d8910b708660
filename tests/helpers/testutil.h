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

/* A raw OS thread for tests that need concurrency before the thread API is in play. */
typedef struct mp_test_thread mp_test_thread;
mp_test_thread *mp_test_thread_start(void (*fn)(void *), void *arg);
void mp_test_thread_join(mp_test_thread *t);

/* Open file descriptors (Linux) or handles (Windows) of this process, to detect leaks. */
int mp_test_open_handles(void);

/* Bytes the C heap has handed out and not taken back (glibc's mallinfo2, the sanitizers'
 * allocator, msvcrt's heap walk): tests compare it before and after a workload. */
size_t mp_test_heap_in_use(void);

/* Sleeps; for tests that must let time pass (never to paper over a race). */
void mp_test_sleep_ms(int ms);

#endif
