/* Per-job overhead of mprun: 1,000 trivial jobs (/bin/true) two at a time, beside
 * xargs -P2 and GNU parallel -j2 (Debian's `parallel`; without it the benchmark says so and
 * measures the rest). mprun and GNU parallel run with the progress bar (forced: stderr is
 * not a terminal here) and a job log, as a user watching a long run would; xargs with -t,
 * which writes a line per job as the logs do. Every run is checked: 1,000 lines in the
 * log or trace, every job's exit status 0. A round is one whole run of 1,000 jobs; the
 * figure is milliseconds per job. Targets: mprun within 1.2x of xargs, and at least 5x
 * faster than GNU parallel (a ratio of at most 0.2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"

#define JOBS 1000
#define MPRUN_PEER "multiproc mprun -j2 --bar --joblog"
#define XARGS_PEER "xargs -P2 -t"
#define PARALLEL_PEER "GNU parallel -j2 --bar --joblog"

static char dir[] = "/tmp/mp-bench-mprun-XXXXXX";
static char values[256], log_path[256], trace[256];

/* Lines of path that hold `needle`. */
static size_t count_lines(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  char line[4096];
  size_t n = 0;
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof line, f) != NULL)
    n += strstr(line, needle) != NULL;
  fclose(f);
  return n;
}

/* Runs argv over the values once, within the round's budget; returns ms per job. */
static double run_all(const char *const *argv, int traced) {
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1;
  o.new_process_group = 1; /* a run past its budget is killed with its jobs */
  o.std_in = (mp_stdio){MP_STDIO_FILE, values, 0, 0};
  o.std_out.mode = MP_STDIO_DEVNULL;
  o.std_err =
      traced ? (mp_stdio){MP_STDIO_FILE, trace, 0, 0} : (mp_stdio){MP_STDIO_DEVNULL, NULL, 0, 0};
  unlink(log_path);
  mp_popen *p;
  double t0 = bench_now_us();
  if (mp_popen_create(&p, argv, &o) != 0)
    return bench_fail("%s: %s", argv[0], mp_last_error());
  int rc = mp_popen_wait(p, bench_remaining_ms()), code = -1;
  double us = bench_now_us() - t0;
  if (rc != 0) {
    mp_popen_kill_tree(p);
    mp_popen_wait(p, MP_FOREVER);
  }
  mp_popen_returncode(p, &code);
  mp_popen_free(p);
  if (rc != 0)
    return bench_fail("%s did not finish within its budget", argv[0]);
  /* A job log line of a job that exited 0: "...\t0\t0\t/bin/true N"; xargs -t: the
   * command it ran. */
  size_t ok =
      traced ? count_lines(trace, "/bin/true ") : count_lines(log_path, "\t0\t0\t/bin/true ");
  if (code != 0 || ok != JOBS)
    return bench_fail("%s exited %d with %zu of %d jobs done", argv[0], code, ok, JOBS);
  return us / 1000.0 / JOBS;
}

static double run_mprun(void *ctx) {
  (void)ctx;
  const char *argv[] = {MP_MPRUN, "-j2", "--bar", "--joblog", log_path, "/bin/true", NULL};
  return run_all(argv, 0);
}

static double run_xargs(void *ctx) {
  (void)ctx;
  const char *argv[] = {"xargs", "-P2", "-n1", "-t", "/bin/true", NULL};
  return run_all(argv, 1);
}

static double run_parallel(void *ctx) {
  (void)ctx;
  const char *argv[] = {"parallel", "--will-cite", "-j2",       "--bar",
                        "--joblog", log_path,      "/bin/true", NULL};
  return run_all(argv, 0);
}

static int have_parallel(void) {
  const char *argv[] = {"parallel", "--version", NULL};
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1;
  o.std_out.mode = o.std_err.mode = MP_STDIO_PIPE;
  o.timeout_ms = 30000;
  mp_run_result r;
  int ok = mp_run(argv, &o, &r) == 0 && r.returncode == 0 && r.out != NULL &&
           strstr(r.out, "GNU parallel") != NULL;
  mp_run_result_free(&r);
  return ok;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  bench_init("mprun", argc, argv);
  if (mkdtemp(dir) == NULL)
    return 2;
  snprintf(values, sizeof values, "%s/values", dir);
  snprintf(log_path, sizeof log_path, "%s/jobs.log", dir);
  snprintf(trace, sizeof trace, "%s/xargs.trace", dir);
  FILE *f = fopen(values, "w");
  for (int i = 1; f != NULL && i <= JOBS; i++)
    fprintf(f, "%d\n", i);
  if (f == NULL || fclose(f) != 0)
    return 2;
  bench_case *c = bench_case_new("mprun", "1,000 x /bin/true, 2 at a time", "ms/job", 0);
  bench_peer(c, MPRUN_PEER, run_mprun, NULL);
  bench_peer(c, XARGS_PEER, run_xargs, NULL);
  int parallel = have_parallel();
  if (parallel)
    bench_peer(c, PARALLEL_PEER, run_parallel, NULL);
  bench_case_run(c);
  if (!parallel)
    bench_note("GNU parallel not measured: install it (Debian: apt-get install parallel) and "
               "re-run bench/run mprun");
  bench_target("mprun_vs_xargs", c, MPRUN_PEER, XARGS_PEER, "<=", 1.2);
  if (parallel)
    bench_target("mprun_vs_gnu_parallel", c, MPRUN_PEER, PARALLEL_PEER, "<=", 0.2);
  unlink(values);
  unlink(log_path);
  unlink(trace);
  rmdir(dir);
  return bench_finish();
}
