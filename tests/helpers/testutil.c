#include "testutil.h"

#ifdef _WIN32
#  include <windows.h>
#else
#  include <dirent.h>
#  include <pthread.h>
#  include <time.h>
#endif
#include <signal.h>
#include <stdlib.h>

#include <stdio.h>
#include <string.h>

void mp_test_fail_code(const char *expr, int want, int got, const char *file, int line) {
  print_error("%s returned %d (%s), expected %d (%s); last error: %s\n", expr, got,
              mp_strerror(got), want, mp_strerror(want), mp_last_error());
  _fail(file, line);
}

struct mp_test_thread {
  void (*fn)(void *);
  void *arg;
#ifdef _WIN32
  HANDLE h;
#else
  pthread_t t;
#endif
};

#ifdef _WIN32
static DWORD WINAPI thread_main(void *p) {
  mp_test_thread *t = p;
  t->fn(t->arg);
  return 0;
}
#else
static void *thread_main(void *p) {
  mp_test_thread *t = p;
  t->fn(t->arg);
  return NULL;
}
#endif

mp_test_thread *mp_test_thread_start(void (*fn)(void *), void *arg) {
  mp_test_thread *t = calloc(1, sizeof *t);
  assert_non_null(t);
  t->fn = fn;
  t->arg = arg;
#ifdef _WIN32
  t->h = CreateThread(NULL, 0, thread_main, t, 0, NULL);
  assert_non_null(t->h);
#else
  assert_int_equal(pthread_create(&t->t, NULL, thread_main, t), 0);
#endif
  return t;
}

void mp_test_thread_join(mp_test_thread *t) {
#ifdef _WIN32
  WaitForSingleObject(t->h, INFINITE);
  CloseHandle(t->h);
#else
  pthread_join(t->t, NULL);
#endif
  free(t);
}

int mp_test_open_handles(void) {
#ifdef _WIN32
  DWORD n = 0;
  GetProcessHandleCount(GetCurrentProcess(), &n);
  return (int)n;
#else
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  while (readdir(d) != NULL)
    n++;
  closedir(d);
  return n;
#endif
}

const char *mp_test_program_path(const char *src, char *path, size_t size) {
  size_t n = 0;
#ifdef _WIN32
  if (src[0] == '/') { /* under Wine the build's Unix path is reachable as Z:\ */
    path[n++] = 'Z';
    path[n++] = ':';
  }
  for (; *src && n + 1 < size; src++)
    path[n++] = *src == '/' ? '\\' : *src;
#else
  for (; *src && n + 1 < size; src++)
    path[n++] = *src;
#endif
  path[n] = '\0';
  return path;
}

const char *mp_test_child_program(void) {
  static char path[4096];
#ifndef MP_TESTCHILD
  fail_msg("this test was built without MP_TESTCHILD");
  return path;
#else
  return mp_test_program_path(MP_TESTCHILD, path, sizeof path);
#endif
}

/* ---- verified messages ------------------------------------------------------------- */

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= UINT64_C(0xff51afd7ed558ccd);
  x ^= x >> 33;
  return x;
}

static uint64_t checksum(const unsigned char *p, size_t n) {
  uint64_t h = UINT64_C(0xcbf29ce484222325) ^ n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = mix(h ^ w);
  }
  for (; i < n; i++)
    h = mix(h ^ p[i]);
  return h;
}

size_t mp_test_make_msg(unsigned char *buf, uint32_t producer, uint32_t seq, size_t len) {
  struct mp_test_msg_hdr h = {producer, seq, (uint32_t)len, 0, 0};
  uint64_t x = mix(((uint64_t)producer << 32) | seq) | 1;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    buf[sizeof h + i] = (unsigned char)x;
  }
  h.sum = checksum(buf + sizeof h, len);
  memcpy(buf, &h, sizeof h);
  return sizeof h + len;
}

int mp_test_check_msg(const void *buf, size_t n, struct mp_test_msg_hdr *h) {
  if (n < sizeof *h)
    return -1;
  memcpy(h, buf, sizeof *h);
  if (h->len != n - sizeof *h)
    return -2;
  return checksum((const unsigned char *)buf + sizeof *h, h->len) == h->sum ? 0 : -3;
}

size_t mp_test_rand_len(uint32_t producer, uint32_t seq, size_t max) {
  return (size_t)(mix(((uint64_t)seq << 8) ^ producer ^ UINT64_C(0x9e3779b97f4a7c15)) % (max + 1));
}

void mp_test_crash(void) {
#ifndef _WIN32
  signal(SIGSEGV, SIG_DFL);
#endif
  /* Not NULL, so no sanitizer intercepts; through a volatile so that an optimising compiler
   * cannot see (and warn about) the constant address. */
  volatile uintptr_t addr = 16;
  *(volatile int *)addr = 1;
}
