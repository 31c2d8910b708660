/* Spawn + wait of a trivial program (/bin/true): mp_run against raw posix_spawn+waitpid,
 * APR's apr_proc_create+apr_proc_wait and Python's subprocess.run. The cost is the child's
 * exec, so mp_run should be within 10% of raw posix_spawn and no slower than the others.
 * Each round a peer runs the program STARTS times and reports the median. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef MP_HAVE_APR
#  include <apr_general.h>
#  include <apr_thread_proc.h>
#endif

#include "benchutil.h"

#define STARTS 100
#define PROG "/bin/true"
#define STR(x) #x
#define XSTR(x) STR(x)

extern char **environ;

static double raw_spawn(void *ctx) {
  (void)ctx;
  char *argv[] = {PROG, NULL};
  pid_t pid;
  double t0 = bench_now_us();
  if (posix_spawn(&pid, PROG, NULL, NULL, argv, environ) != 0)
    return bench_fail("posix_spawn failed");
  return bench_reap_us(pid, t0);
}

static double mp_spawn(void *ctx) {
  (void)ctx;
  const char *argv[] = {PROG, NULL};
  mp_run_result r;
  /* No timeout option: the plain call users make is what is measured; /bin/true ends at
   * once, and the harness's watchdog bounds the sample anyway. */
  double t0 = bench_now_us();
  int rc = mp_run(argv, NULL, &r);
  double us = bench_now_us() - t0;
  if (rc != 0)
    return bench_fail("mp_run: %s", mp_last_error());
  int code = r.returncode;
  mp_run_result_free(&r);
  return code == 0 ? us : bench_fail("exit code %d", code);
}

#ifdef MP_HAVE_APR
static apr_pool_t *pool;

/* apr_proc_wait has no timeout; the harness's watchdog bounds it. */
static double apr_spawn(void *ctx) {
  (void)ctx;
  const char *argv[] = {PROG, NULL};
  apr_procattr_t *attr;
  apr_proc_t proc;
  int code = -1;
  apr_exit_why_e why;
  apr_pool_t *sub;
  apr_pool_create(&sub, pool);
  double t0 = bench_now_us();
  int ok = apr_procattr_create(&attr, sub) == APR_SUCCESS &&
           apr_procattr_cmdtype_set(attr, APR_PROGRAM) == APR_SUCCESS &&
           apr_proc_create(&proc, PROG, argv, NULL, attr, sub) == APR_SUCCESS &&
           apr_proc_wait(&proc, &code, &why, APR_WAIT) == APR_CHILD_DONE;
  double us = bench_now_us() - t0;
  apr_pool_destroy(sub);
  return ok && code == 0 ? us : bench_fail("apr_proc_create/wait failed");
}

static double apr_spawns(void *ctx) { return bench_median_of(STARTS, apr_spawn, ctx); }
#endif

static double raw_spawns(void *ctx) { return bench_median_of(STARTS, raw_spawn, ctx); }
static double mp_spawns(void *ctx) { return bench_median_of(STARTS, mp_spawn, ctx); }

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  bench_init("popen", argc, argv);
#ifdef MP_HAVE_APR
  apr_initialize();
  apr_pool_create(&pool, NULL);
#endif
  bench_case *c = bench_case_new("popen", "spawn+wait of " PROG, "us", 0);
  bench_peer(c, "raw posix_spawn+waitpid", raw_spawns, NULL);
  bench_peer(c, "multiproc mp_run", mp_spawns, NULL);
#ifdef MP_HAVE_APR
  bench_peer(c, "APR apr_proc_create+wait", apr_spawns, NULL);
#endif
  bench_python_peer(c, "Python subprocess.run", "bench_popen.py", "run " XSTR(STARTS) " " PROG);
  bench_case_run(c);
#ifndef MP_HAVE_APR
  bench_note("APR not measured: install libapr1-dev (Debian) and re-run bench/run");
#endif
  bench_target("popen_run_vs_raw_posix_spawn", c, "multiproc mp_run", "raw posix_spawn+waitpid",
               "<=", 1.1);
  bench_target("popen_run_vs_python_subprocess_run", c, "multiproc mp_run", "Python subprocess.run",
               "<=", 1.0);
#ifdef MP_HAVE_APR
  bench_target("popen_run_vs_apr_proc_create", c, "multiproc mp_run", "APR apr_proc_create+wait",
               "<=", 1.0);
  apr_pool_destroy(pool);
  apr_terminate();
#endif
  return bench_finish();
}
