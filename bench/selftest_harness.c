/* The harness's own check (bench/run --self-test): peers that fail in every way a peer can
 * must give failure lines, never a hang. Not a benchmark: its name does not start with
 * bench_, so bench/run never runs it as one. */
#include <stdio.h>
#include <string.h>

#include "benchutil.h"

#ifndef _WIN32
#  include <unistd.h>
#endif

static double quick(void *ctx) {
  (void)ctx;
  return 1.0;
}

/* Waits on a pipe nobody writes to, bounded by the budget as every peer's waits are. */
static double bounded(void *ctx) {
  (void)ctx;
  mp_conn *a = NULL, *b = NULL;
  void *m = NULL;
  size_t n;
  if (mp_pipe(&a, &b, 1) != 0)
    return bench_fail("mp_pipe: %s", mp_last_error());
  int rc = mp_conn_recv(a, &m, &n, bench_remaining_ms());
  mp_free(m);
  mp_conn_free(a);
  mp_conn_free(b);
  return bench_fail("the wait ended: %s", mp_strerror(rc));
}

static double wrong(void *ctx) {
  (void)ctx;
  return bench_fail("message 7 is corrupt");
}

#ifndef _WIN32
/* A wait the peer did not bound: only the watchdog ends it. */
static double stuck(void *ctx) {
  (void)ctx;
  for (;;)
    pause();
  return -1;
}
#endif

/* The last argument picks the scenario: none, --stuck (a peer only the watchdog stops), or
 * --python-hang (a Python peer with a child, neither of which ends: for the runner's own
 * time limit and its clean-up of what a killed program leaves). */
int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[argc - 1] : "";
  mp_init(&argc, &argv);
  bench_init("selftest", argc, argv);
  if (strcmp(mode, "--python-hang") == 0) {
    bench_case *h = bench_case_new("selftest", "a Python peer that hangs", "us", 0);
    bench_python_peer(h, "Python sleeper", "selftest_harness.py", "sleep");
    bench_case_run(h);
    return bench_finish();
  }
  bench_case *c = bench_case_new("selftest", "bounded failures", "us", 0);
  bench_peer(c, "multiproc quick", quick, NULL);
  bench_peer(c, "bounded wait", bounded, NULL);
  bench_peer(c, "wrong message", wrong, NULL);
  bench_python_peer(c, "Python sleeper", "selftest_harness.py", "sleep");
  bench_python_peer(c, "Python crash", "selftest_harness.py", "crash");
  bench_case_run(c);
  bench_target("selftest_quick_vs_bounded", c, "multiproc quick", "bounded wait", "<=", 1);
#ifndef _WIN32
  if (strcmp(mode, "--stuck") == 0) {
    bench_case *s = bench_case_new("selftest", "unbounded wait", "us", 0);
    bench_peer(s, "stuck", stuck, NULL);
    bench_case_run(s);
  }
#endif
  return bench_finish();
}
