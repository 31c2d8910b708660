#include "testutil.h"

#ifdef _WIN32
#  include <windows.h>
#else
#  include <dirent.h>
#  include <limits.h>
#  include <pthread.h>
#  include <time.h>
#  include <unistd.h>
#endif
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

void mp_test_sleep_ms(int ms) {
#ifdef _WIN32
  Sleep((DWORD)ms);
#else
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
#endif
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
  char base[MAX_PATH];
  static LONG counter;
  GetTempPathA(sizeof base, base);
  snprintf(out, size, "%smp-%s-%lu-%ld", base, tag, (unsigned long)GetCurrentProcessId(),
           InterlockedIncrement(&counter));
  assert_true(CreateDirectoryA(out, NULL));
#else
  char tmpl[256], real[PATH_MAX];
  snprintf(tmpl, sizeof tmpl, "/tmp/mp-%s-XXXXXX", tag);
  assert_non_null(mkdtemp(tmpl));
  assert_non_null(realpath(tmpl, real));
  snprintf(out, size, "%s", real);
#endif
}

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
