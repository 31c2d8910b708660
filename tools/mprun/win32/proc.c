/* The process on Windows: the command line read as UTF-16 (the C runtime's argv is in the
 * ANSI code page and loses what it cannot represent), the wall clock, and what the public
 * API cannot tell about a finished job's descendants. */
#include <windows.h>

#include <shellapi.h>
#include <stdlib.h>

#include "../sys.h"
#include "multiproc.h"

static char *to_utf8(const wchar_t *w) {
  int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
  char *s = n > 0 ? malloc((size_t)n) : NULL;
  if (s != NULL)
    WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL);
  return s;
}

int sys_utf8_argv(int *argc, char ***argv) {
  int wargc;
  wchar_t **wargv = CommandLineToArgvW(GetCommandLineW(), &wargc);
  if (wargv == NULL)
    return mp_set_error(MP_EOS, "CommandLineToArgvW failed (error %lu)",
                        (unsigned long)GetLastError());
  char **v = calloc((size_t)wargc + 1, sizeof *v);
  for (int i = 0; v != NULL && i < wargc; i++) {
    if ((v[i] = to_utf8(wargv[i])) == NULL) {
      LocalFree(wargv);
      return mp_set_error(MP_ENOMEM, "out of memory for the arguments");
    }
  }
  LocalFree(wargv);
  if (v == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for the arguments");
  *argc = wargc;
  *argv = v;
  return 0;
}

double sys_wall_time(void) {
  FILETIME ft;
  GetSystemTimePreciseAsFileTime(&ft);
  uint64_t t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
  /* 100 ns ticks since 1601 to seconds since 1970. */
  return (double)(t - 116444736000000000ULL) / 1e7;
}

int sys_job_may_linger(int64_t pid) {
  /* The job object that holds the tree is the library's own; assume the worst. */
  (void)pid;
  return 1;
}

int sys_is_windows(void) { return 1; }
