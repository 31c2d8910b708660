/* Per-job overhead of mprun: 1,000 trivial jobs (/bin/true) two at a time, beside xargs -P2
 * and GNU parallel -j2 (Debian's `parallel`; without it the benchmark says so and measures
 * the rest). mprun and GNU parallel run with the progress bar and a job log, as a user
 * watching a long run would; xargs with -t, which writes a line per job as the logs do.
 * Each run is checked: 1,000 log lines, every job's exit status 0. The peers take turns
 * within each round (the order rotating), and the figures are medians over the rounds.
 * Targets: mprun within 1.2x of xargs, at least 5x faster than GNU parallel. */
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"
#include "multiproc.h"

#define JOBS 1000
#define ROUNDS 5
#define PEERS 3

static char dir[] = "/tmp/mp-bench-mprun-XXXXXX";
static char values[256], log_path[256], trace[256];

static const char *peer_names[PEERS] = {"xargs -P2 -t", "mprun -j2 --bar --joblog",
                                        "GNU parallel -j2 --bar --joblog"};

static size_t count_lines(const char *path, const char *must_hold) {
  FILE *f = fopen(path, "r");
  char line[4096];
  size_t n = 0;
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof line, f) != NULL)
    n += must_hold == NULL || strstr(line, must_hold) != NULL;
  fclose(f);
  return n;
}

/* Counts job log lines whose Exitval and Signal are both 0. */
static size_t count_ok_jobs(const char *path) { return count_lines(path, "\t0\t0\t/bin/true "); }

/* Runs one peer over the values once; returns the wall time in seconds, or -1. */
static double run_peer(int peer) {
  static const char *const xargs[] = {"xargs", "-P2", "-n1", "-t", "/bin/true", NULL};
  const char *mprun[] = {MP_MPRUN, "-j2", "--bar", "--joblog", log_path, "/bin/true", NULL};
  const char *parallel[] = {"parallel", "--will-cite", "-j2",       "--bar",
                            "--joblog", log_path,      "/bin/true", NULL};
  const char *const *argv = peer == 0 ? xargs : peer == 1 ? mprun : parallel;
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1;
  o.std_in = (mp_stdio){MP_STDIO_FILE, values, 0, 0};
  o.std_out.mode = MP_STDIO_DEVNULL;
  o.std_err =
      peer == 0 ? (mp_stdio){MP_STDIO_FILE, trace, 0, 0} : (mp_stdio){MP_STDIO_DEVNULL, NULL, 0, 0};
  unlink(log_path);
  mp_popen *p;
  uint64_t t0 = mp_monotonic_ns();
  if (mp_popen_create(&p, argv, &o) != 0)
    return -1;
  int code = -1;
  mp_popen_wait(p, MP_FOREVER);
  double secs = (double)(mp_monotonic_ns() - t0) / 1e9;
  mp_popen_returncode(p, &code);
  mp_popen_free(p);
  size_t ok = peer == 0 ? count_lines(trace, "/bin/true ") : count_ok_jobs(log_path);
  if (code != 0 || ok != JOBS) {
    fprintf(stderr, "%s: exit %d, %zu of %d jobs verified\n", peer_names[peer], code, ok, JOBS);
    exit(2);
  }
  return secs;
}

static int have_parallel(void) {
  const char *argv[] = {"parallel", "--version", NULL};
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.search_path = 1;
  o.std_out.mode = o.std_err.mode = MP_STDIO_PIPE;
  mp_run_result r;
  int ok = mp_run(argv, &o, &r) == 0 && r.returncode == 0 && r.out && strstr(r.out, "GNU parallel");
  mp_run_result_free(&r);
  return ok;
}

int main(void) {
  static double t[PEERS][ROUNDS];
  if (mkdtemp(dir) == NULL)
    return 2;
  snprintf(values, sizeof values, "%s/values", dir);
  snprintf(log_path, sizeof log_path, "%s/jobs.log", dir);
  snprintf(trace, sizeof trace, "%s/xargs.trace", dir);
  FILE *f = fopen(values, "w");
  for (int i = 1; i <= JOBS; i++)
    fprintf(f, "%d\n", i);
  fclose(f);
  int peers = have_parallel() ? PEERS : PEERS - 1;
  run_peer(0); /* warm-up: page cache, dynamic loader */
  run_peer(1);
  for (int r = 0; r < ROUNDS; r++)
    for (int k = 0; k < peers; k++) {
      int peer = (r + k) % peers;
      t[peer][r] = run_peer(peer);
    }
  printf("%d jobs of /bin/true, 2 at a time; median of %d interleaved rounds (min..max)\n", JOBS,
         ROUNDS);
  double med[PEERS];
  for (int k = 0; k < peers; k++) {
    double lo = t[k][0], hi = t[k][0];
    for (int r = 1; r < ROUNDS; r++) {
      lo = t[k][r] < lo ? t[k][r] : lo;
      hi = t[k][r] > hi ? t[k][r] : hi;
    }
    med[k] = bench_median(t[k], ROUNDS);
    printf("  %-34s %7.3f s  %6.3f ms/job  (%.3f..%.3f s)\n", peer_names[k], med[k],
           med[k] * 1000 / JOBS, lo, hi);
  }
  if (peers < PEERS)
    printf("  note: GNU parallel is not installed (Debian: apt-get install parallel); no figure\n");
  bench_target("mprun_vs_xargs", med[1] / med[0], "<=", 1.2);
  if (peers == PEERS)
    bench_target("mprun_vs_gnu_parallel", med[2] / med[1], ">=", 5.0);
  unlink(values);
  unlink(log_path);
  unlink(trace);
  rmdir(dir);
  return 0;
}
