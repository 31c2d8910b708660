/* Spawn + wait of a trivial program (/bin/true): mp_run against raw posix_spawn+waitpid,
 * APR's apr_proc_create+apr_proc_wait and Python's subprocess.run. The cost is the child's
 * exec, so mp_run should be within 10% of raw posix_spawn and no slower than the others.
 * The C peers run interleaved, one of each per round, so drift hits them alike. */
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE /* posix_spawn, environ */
#endif
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef MP_HAVE_APR
#  include <apr_general.h>
#  include <apr_thread_proc.h>
#endif

#include "benchutil.h"
#include "multiproc.h"

#define ROUNDS 300
#define PROG "/bin/true"

extern char **environ;

static double now_us(void) { return (double)mp_monotonic_ns() / 1000.0; }

static double raw_spawn(void) {
  char *argv[] = {PROG, NULL};
  pid_t pid;
  int st;
  double t0 = now_us();
  if (posix_spawn(&pid, PROG, NULL, NULL, argv, environ) != 0 || waitpid(pid, &st, 0) != pid)
    exit(2);
  return now_us() - t0;
}

static double mp_spawn(void) {
  const char *argv[] = {PROG, NULL};
  mp_run_result r;
  double t0 = now_us();
  int rc = mp_run(argv, NULL, &r);
  double t = now_us() - t0;
  if (rc != 0 || r.returncode != 0) {
    fprintf(stderr, "mp_run: %s\n", mp_last_error());
    exit(2);
  }
  mp_run_result_free(&r);
  return t;
}

#ifdef MP_HAVE_APR
static apr_pool_t *pool;

static double apr_spawn(void) {
  const char *argv[] = {PROG, NULL};
  apr_procattr_t *attr;
  apr_proc_t proc;
  int code;
  apr_exit_why_e why;
  apr_pool_t *sub;
  apr_pool_create(&sub, pool);
  double t0 = now_us();
  if (apr_procattr_create(&attr, sub) != APR_SUCCESS ||
      apr_procattr_cmdtype_set(attr, APR_PROGRAM) != APR_SUCCESS ||
      apr_proc_create(&proc, PROG, argv, NULL, attr, sub) != APR_SUCCESS ||
      apr_proc_wait(&proc, &code, &why, APR_WAIT) != APR_CHILD_DONE)
    exit(2);
  double t = now_us() - t0;
  apr_pool_destroy(sub);
  return t;
}
#endif

int main(void) {
  static double raw[ROUNDS], mine[ROUNDS], apr[ROUNDS];
#ifdef MP_HAVE_APR
  apr_initialize();
  apr_pool_create(&pool, NULL);
#endif
  for (int i = 0; i < 10; i++) { /* warm-up */
    raw_spawn();
    mp_spawn();
  }
  for (int i = 0; i < ROUNDS; i++) {
    raw[i] = raw_spawn();
    mine[i] = mp_spawn();
#ifdef MP_HAVE_APR
    apr[i] = apr_spawn();
#endif
  }
  double m_raw = bench_median(raw, ROUNDS), m_mine = bench_median(mine, ROUNDS);
  printf("spawn+wait of %s, median of %d runs\n", PROG, ROUNDS);
  printf("  %-34s %9.1f us\n", "raw posix_spawn + waitpid", m_raw);
  printf("  %-34s %9.1f us\n", "multiproc mp_run", m_mine);
  double m_apr = -1;
#ifdef MP_HAVE_APR
  m_apr = bench_median(apr, ROUNDS);
  printf("  %-34s %9.1f us\n", "APR apr_proc_create + wait", m_apr);
#else
  (void)apr;
  printf("  note: APR headers not found at build time; install libapr1-dev (Debian) and "
         "re-run bench/run to measure apr_proc_create\n");
#endif
  char cmd[512];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench_popen.py %d %s", MP_BENCH_DIR, ROUNDS, PROG);
  char *py = bench_capture(cmd);
  double m_py = py ? bench_field(py, "median_us") : -1;
  free(py);
  if (m_py > 0)
    printf("  %-34s %9.1f us\n", "Python subprocess.run", m_py);
  else
    printf("  note: /usr/bin/python3 did not run; no Python figure\n");

  printf("ratios: mp_run/raw %.3f", m_mine / m_raw);
  if (m_apr > 0)
    printf("  mp_run/apr %.3f", m_mine / m_apr);
  if (m_py > 0)
    printf("  mp_run/python %.3f", m_mine / m_py);
  printf("\n");
  bench_target("popen_run_vs_raw_posix_spawn", m_mine / m_raw, "<=", 1.1);
  if (m_py > 0)
    bench_target("popen_run_vs_python_subprocess_run", m_mine / m_py, "<=", 1.0);
  if (m_apr > 0)
    bench_target("popen_run_vs_apr_proc_create", m_mine / m_apr, "<=", 1.0);
#ifdef MP_HAVE_APR
  apr_pool_destroy(pool);
  apr_terminate();
#endif
  return 0;
}
