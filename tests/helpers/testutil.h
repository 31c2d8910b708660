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

/* Bytes the C heap has handed out and not taken back (glibc's mallinfo2, the sanitizers'
 * allocator, msvcrt's heap walk): tests compare it before and after a workload. */
size_t mp_test_heap_in_use(void);

/* Runs program with args (NULL-terminated, at most 14) to completion within 60 s and
 * returns its stdout (free with mp_free); fails the test unless it exits with 0. */
char *mp_test_run(const char *program, const char *const *args);


/* The path of tests/helpers/mp_testchild (under Wine: its Z:\ path). */
const char *mp_test_child_program(void);

/* Copies a path the build gave (a Unix path under Wine) into out in the form the test's own
 * system uses: Z:\... with backslashes under Wine, unchanged elsewhere. */
void mp_test_native_path(char *out, size_t size, const char *build_path);

/* Makes a fresh directory (a new, unguessed name) and stores its full path in out. */
void mp_test_temp_dir(char *out, size_t size, const char *tag);

/* Removes a directory and everything in it. */
void mp_test_remove_tree(const char *path);

/* Returns 1 while process pid runs (a zombie no longer does), 0 once it is gone. */
int mp_test_process_alive(int64_t pid);

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
