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

/* Dies of an invalid memory access (SIGSEGV on POSIX, with the default handler restored
 * because a fork child inherits cmocka's; an access violation on Windows). */
void mp_test_crash(void);

/* Open file descriptors (Linux) or handles (Windows) of this process, to detect leaks. */
int mp_test_open_handles(void);

/* The path of tests/helpers/mp_testchild (under Wine: its Z:\ path). */
const char *mp_test_child_program(void);
/* A program of the build at src, as this process names it (under Wine: Z:\...). */
const char *mp_test_program_path(const char *src, char *path, size_t size);

/* Verified messages for queue tests: a header (producer, sequence number, payload length,
 * checksum), then payload bytes derived from (producer, seq), so a consumer can check each
 * message is whole, unchanged and whose it is. */
struct mp_test_msg_hdr {
  uint32_t producer, seq, len, pad;
  uint64_t sum;
};
/* Builds message seq of producer into buf (len payload bytes); returns its total size. */
size_t mp_test_make_msg(unsigned char *buf, uint32_t producer, uint32_t seq, size_t len);
/* 0 if buf[0..n) is an intact message (fills *h), negative if not. */
int mp_test_check_msg(const void *buf, size_t n, struct mp_test_msg_hdr *h);
/* A payload length in [0, max] that depends on (producer, seq). */
size_t mp_test_rand_len(uint32_t producer, uint32_t seq, size_t max);

#endif
