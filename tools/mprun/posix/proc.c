/* The process on POSIX: the wall clock, and whether a finished job left members in its
 * process group (every job leads one, see sched.c). */
#include <errno.h>
#include <signal.h>
#include <time.h>

#include "../sys.h"

double sys_wall_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int sys_job_may_linger(int64_t pid) {
  /* The group is gone once its last member is; a reused id only costs fresh files. */
  return !(kill(-(pid_t)pid, 0) != 0 && errno == ESRCH);
}

int sys_is_windows(void) { return 0; }
