#include "testutil.h"

#ifdef _WIN32
#  include <windows.h>
#else
#  include <dirent.h>
#  include <ftw.h>
#  include <limits.h>
#  include <pthread.h>
#  include <time.h>
#  include <unistd.h>
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

const char *mp_test_child_program(void) {
  static char path[4096];
#ifndef MP_TESTCHILD
  fail_msg("this test was built without MP_TESTCHILD");
#else
  if (path[0] == '\0')
    mp_test_native_path(path, sizeof path, MP_TESTCHILD);
#endif
  return path;
}

void mp_test_native_path(char *out, size_t size, const char *build_path) {
#ifdef _WIN32
  size_t n = 0;
  if (build_path[0] == '/' && size > 2) {
    out[n++] = 'Z';
    out[n++] = ':';
  }
  for (; *build_path && n + 1 < size; build_path++)
    out[n++] = *build_path == '/' ? '\\' : *build_path;
  out[n] = '\0';
#else
  snprintf(out, size, "%s", build_path);
#endif
}

void mp_test_temp_dir(char *out, size_t size, const char *tag) {
#ifdef _WIN32
  /* Random names: Wine reuses small process ids from one run to the next. */
  char base[MAX_PATH];
  GetTempPathA(sizeof base, base);
  for (int tries = 0;; tries++) {
    uint32_t r;
    assert_int_equal(mp_random_bytes(&r, sizeof r), 0);
    snprintf(out, size, "%smp-%s-%08lx", base, tag, (unsigned long)r);
    if (CreateDirectoryA(out, NULL))
      return;
    assert_true(GetLastError() == ERROR_ALREADY_EXISTS && tries < 100);
  }
#else
  char tmpl[256], real[PATH_MAX];
  snprintf(tmpl, sizeof tmpl, "/tmp/mp-%s-XXXXXX", tag);
  assert_non_null(mkdtemp(tmpl));
  assert_non_null(realpath(tmpl, real));
  snprintf(out, size, "%s", real);
#endif
}

#ifdef _WIN32
void mp_test_remove_tree(const char *path) {
  char pattern[MAX_PATH * 2], child[MAX_PATH * 2];
  WIN32_FIND_DATAA fd;
  snprintf(pattern, sizeof pattern, "%s\\*", path);
  HANDLE h = FindFirstFileA(pattern, &fd);
  while (h != INVALID_HANDLE_VALUE) {
    if (strcmp(fd.cFileName, ".") != 0 && strcmp(fd.cFileName, "..") != 0) {
      snprintf(child, sizeof child, "%s\\%s", path, fd.cFileName);
      if (fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)
        mp_test_remove_tree(child);
      else
        DeleteFileA(child);
    }
    if (!FindNextFileA(h, &fd)) {
      FindClose(h);
      break;
    }
  }
  RemoveDirectoryA(path);
}
#else
static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

void mp_test_remove_tree(const char *path) { nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS); }
#endif

int mp_test_process_alive(int64_t pid) {
#ifdef _WIN32
  HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)pid);
  if (h == NULL)
    return 0;
  DWORD r = WaitForSingleObject(h, 0);
  CloseHandle(h);
  return r == WAIT_TIMEOUT;
#else
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = '\0';
  /* "pid (name) S ...": the state follows the last ')'; Z and X are dead. */
  const char *p = strrchr(line, ')');
  return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
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

/* ---- heap in use -------------------------------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#  define MP_TEST_SANITIZER_HEAP 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#    define MP_TEST_SANITIZER_HEAP 1
#  endif
#endif

#if defined(MP_TEST_SANITIZER_HEAP)
/* The sanitizers' allocator statistics (clang's sanitizer/allocator_interface.h; GCC ships
 * the function but not the header). */
size_t __sanitizer_get_current_allocated_bytes(void);
size_t mp_test_heap_in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
#elif defined(_WIN32)
#  include <malloc.h>
size_t mp_test_heap_in_use(void) {
  _HEAPINFO h;
  size_t used = 0;
  h._pentry = NULL;
  while (_heapwalk(&h) == _HEAPOK)
    if (h._useflag == _USEDENTRY)
      used += h._size;
  return used;
}
#else
#  include <malloc.h>
size_t mp_test_heap_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd; /* small blocks in arenas + blocks mmap'd on their own */
}
#endif

/* ---- running a program ----------------------------------------------------------- */

char *mp_test_run(const char *program, const char *const *args) {
  const char *argv[16] = {program};
  size_t n = 1;
  for (; args[n - 1] && n < 15; n++)
    argv[n] = args[n - 1];
  argv[n] = NULL;
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.std_out.mode = MP_STDIO_PIPE;
  o.std_in.mode = MP_STDIO_DEVNULL;
  mp_popen *p = NULL;
  char *out = NULL;
  int code = -1;
  assert_mp_ok(mp_popen_create(&p, argv, &o));
  assert_mp_ok(mp_popen_communicate(p, NULL, 0, &out, NULL, NULL, NULL, 60000));
  assert_mp_ok(mp_popen_returncode(p, &code));
  mp_popen_free(p);
  if (code != 0)
    fail_msg("%s %s exited with %d; output:\n%s", program, args[0], code, out);
  return out;
}
