/* Process start+join latency, fork, spawn and forkserver, beside raw fork+waitpid, a raw
 * posix_spawn of this same executable and Python's multiprocessing (Debian's python3). Each round a
 * peer starts and joins STARTS children and reports the median; the harness interleaves the peers
 * round by round. A Windows build measures spawn beside a raw CreateProcessW of itself
 * (information: no targets there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

#ifdef _WIN32
#  include <windows.h>
#  define STARTS 5 /* a spawn costs ~100 ms under Wine */
#else
#  include <spawn.h>
#  include <sys/wait.h>
#  include <unistd.h>
extern char **environ;
#  define STARTS 60
#endif
#define PY_FORK_STARTS "60"
#define PY_SPAWN_STARTS "8" /* a Python spawn costs 30-130 ms here */
#define PY_FORKSERVER_STARTS "20"

static int nothing(mp_args *a) {
  (void)a;
  return 0;
}

/* One start+join through multiproc, in microseconds; the exit code is checked. */
static double mp_start_join_us(void *method) {
  mp_process_opts o;
  memset(&o, 0, sizeof o);
  o.method = *(const mp_start_method *)method;
  o.daemon = 1; /* never joined at exit if a failure leaves it behind */
  mp_process *p = NULL;
  double t0 = bench_now_us();
  if (mp_process_create(&p, nothing, NULL, &o) || mp_process_start(p)) {
    mp_process_free(p);
    return bench_fail("start failed: %s", mp_last_error());
  }
  if (mp_process_join(p, bench_remaining_ms()) != 0) {
    mp_process_kill(p);
    mp_process_free(p);
    return bench_fail("join did not finish in time: %s", mp_last_error());
  }
  double us = bench_now_us() - t0;
  int code = -1;
  mp_process_exitcode(p, &code);
  mp_process_free(p);
  return code == 0 ? us : bench_fail("the child's exit code is %d", code);
}

/* One start+join outside the measurements: a failure shows up in the peer's rounds. */
static void warm_up(mp_start_method m) {
  mp_process_opts o;
  memset(&o, 0, sizeof o);
  o.method = m;
  mp_process *p = NULL;
  if (mp_process_create(&p, nothing, NULL, &o) == 0 && mp_process_start(p) == 0)
    mp_process_join(p, 30000);
  mp_process_free(p);
}

static double mp_starts(void *method) { return bench_median_of(STARTS, mp_start_join_us, method); }

static char self[4096]; /* this executable, for the raw spawn peer */

#ifndef _WIN32
static double raw_fork_us(void *ctx) {
  (void)ctx;
  double t0 = bench_now_us();
  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  return pid < 0 ? bench_fail("fork failed") : bench_reap_us(pid, t0);
}

static double raw_spawn_us(void *ctx) {
  (void)ctx;
  char *argv[] = {self, "--exit-now", NULL};
  double t0 = bench_now_us();
  pid_t pid;
  if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0)
    return bench_fail("posix_spawn failed");
  return bench_reap_us(pid, t0);
}

static double raw_forks(void *ctx) { return bench_median_of(STARTS, raw_fork_us, ctx); }
#else
/* The floor on Windows: CreateProcessW of this executable, which exits at once. */
static double raw_spawn_us(void *ctx) {
  (void)ctx;
  static wchar_t wself[4096], cmd[4200];
  if (!wself[0]) {
    GetModuleFileNameW(NULL, wself, 4096);
    _snwprintf(cmd, 4200, L"\"%ls\" --exit-now", wself);
  }
  STARTUPINFOW si;
  PROCESS_INFORMATION pi;
  memset(&si, 0, sizeof si);
  si.cb = sizeof si;
  double t0 = bench_now_us();
  if (!CreateProcessW(wself, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi))
    return bench_fail("CreateProcessW failed: error %lu", GetLastError());
  DWORD w = WaitForSingleObject(pi.hProcess, (DWORD)bench_remaining_ms()), code = 1;
  double us = bench_now_us() - t0;
  if (w != WAIT_OBJECT_0)
    TerminateProcess(pi.hProcess, 1);
  GetExitCodeProcess(pi.hProcess, &code);
  CloseHandle(pi.hThread);
  CloseHandle(pi.hProcess);
  return w == WAIT_OBJECT_0 && code == 0 ? us : bench_fail("child wait %lu, code %lu", w, code);
}
#endif

static double raw_spawns(void *ctx) { return bench_median_of(STARTS, raw_spawn_us, ctx); }

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--exit-now") == 0)
    return 0; /* the raw spawn peer: the same executable, exiting at once */
  mp_init(&argc, &argv);
  bench_init("process", argc, argv);
  snprintf(self, sizeof self, "%s", argv[0]);
  static const mp_start_method spawn_m = MP_START_SPAWN;

#ifndef _WIN32
  static const mp_start_method fork_m = MP_START_FORK;
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  bench_case *by_fork = bench_case_new("process", "start+join, fork", "us", 0);
  bench_peer(by_fork, "multiproc fork", mp_starts, (void *)&fork_m);
  bench_peer(by_fork, "raw fork()+waitpid", raw_forks, NULL);
  bench_python_peer(by_fork, "Python Process (fork)", "bench_process.py",
                    "start fork " PY_FORK_STARTS);
  bench_case_run(by_fork);
#endif
  bench_case *by_spawn = bench_case_new("process", "start+join, spawn", "us", 0);
  bench_peer(by_spawn, "multiproc spawn", mp_starts, (void *)&spawn_m);
#ifdef _WIN32
  bench_peer(by_spawn, "raw CreateProcessW(self)+wait", raw_spawns, NULL);
#else
  bench_peer(by_spawn, "raw posix_spawn(self)+waitpid", raw_spawns, NULL);
  bench_python_peer(by_spawn, "Python Process (spawn)", "bench_process.py",
                    "start spawn " PY_SPAWN_STARTS);
#endif
  bench_case_run(by_spawn);

#ifndef _WIN32
  /* The fork server beside what it is measured against, in one case: the ratios are taken
   * round by round. Its server starts before the first round (Python's peer warms up too). */
  static const mp_start_method forkserver_m = MP_START_FORKSERVER;
  warm_up(MP_START_FORKSERVER);
  bench_case *by_server = bench_case_new("process", "start+join, forkserver", "us", 0);
  bench_peer(by_server, "multiproc forkserver", mp_starts, (void *)&forkserver_m);
  bench_peer(by_server, "raw fork()+waitpid", raw_forks, NULL);
  bench_peer(by_server, "multiproc fork", mp_starts, (void *)&fork_m);
  bench_peer(by_server, "multiproc spawn", mp_starts, (void *)&spawn_m);
  bench_python_peer(by_server, "Python Process (forkserver)", "bench_process.py",
                    "start forkserver " PY_FORKSERVER_STARTS);
  bench_case_run(by_server);

  bench_target("process_fork_vs_raw_fork", by_fork, "multiproc fork", "raw fork()+waitpid",
               "<=", 1.5);
  bench_target("process_spawn_vs_raw_posix_spawn", by_spawn, "multiproc spawn",
               "raw posix_spawn(self)+waitpid", "<=", 1.5);
  bench_target("process_spawn_vs_python_spawn", by_spawn, "multiproc spawn",
               "Python Process (spawn)", "<=", 0.05);
  bench_target("process_fork_vs_python_fork", by_fork, "multiproc fork", "Python Process (fork)",
               "<=", 1.0);
  bench_target("process_forkserver_vs_raw_fork", by_server, "multiproc forkserver",
               "raw fork()+waitpid", "<=", 2.0);
  bench_target("process_forkserver_vs_spawn", by_server, "multiproc forkserver", "multiproc spawn",
               "<=", 1.0 / 3);
  bench_target("process_forkserver_vs_python_forkserver", by_server, "multiproc forkserver",
               "Python Process (forkserver)", "<=", 0.1);
#endif
  return bench_finish();
}
