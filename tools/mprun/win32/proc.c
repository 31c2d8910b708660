/* The process on Windows: the wall clock, and what the public API cannot tell about a
 * finished job's descendants. */
#include <windows.h>

#include <stdlib.h>

#include "../sys.h"
#include "multiproc.h"

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
