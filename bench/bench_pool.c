/* Pool throughput: map over 100,000 trivial tasks (x*x) on two workers, with chunksize 1
 * and with the default chunking, beside Python's Pool(2).map and
 * ProcessPoolExecutor(2).map on the same work in the same run; and a pool's start-up +
 * shutdown time beside Python's. Every result is checked. Medians of ROUNDS runs. */
#include <multiproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

#define N 100000
#define ROUNDS 5

static int square(const mp_value *in, mp_value **out) {
  int64_t x = 0;
  if (mp_value_get_int(in, &x) < 0)
    return -1;
  *out = mp_value_int(x * x);
  return *out ? 0 : -1;
}

static void die(const char *what) {
  fprintf(stderr, "bench_pool: %s: %s\n", what, mp_last_error());
  exit(1);
}

static mp_value *inputs[N], *outputs[N];

/* One map of N tasks: tasks per second, every output checked. */
static double map_rate(mp_pool *p, size_t chunksize) {
  uint64_t t0 = mp_monotonic_ns();
  if (mp_pool_map(p, square, (const mp_value *const *)inputs, N, chunksize, outputs) < 0)
    die("mp_pool_map");
  double s = (double)(mp_monotonic_ns() - t0) / 1e9;
  for (int64_t i = 0; i < N; i++) {
    int64_t v = -1;
    if (mp_value_get_int(outputs[i], &v) < 0 || v != i * i) {
      fprintf(stderr, "bench_pool: output %lld is wrong\n", (long long)i);
      exit(1);
    }
    mp_value_free(outputs[i]);
  }
  return N / s;
}

static void end_pool(mp_pool *p) {
  if (mp_pool_close(p) < 0 || mp_pool_join(p, MP_FOREVER) < 0)
    die("close/join");
  mp_pool_free(p);
}

/* Create, one task, close, join: what a short-lived pool costs. */
static double start_stop_ms(void) {
  uint64_t t0 = mp_monotonic_ns();
  mp_pool *p;
  mp_value *in = mp_value_int(3), *out = NULL;
  if (mp_pool_create(&p, 2, NULL) < 0 || mp_pool_apply(p, square, in, &out) < 0)
    die("start-up");
  end_pool(p);
  double ms = (double)(mp_monotonic_ns() - t0) / 1e6;
  mp_value_free(in);
  mp_value_free(out);
  return ms;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  for (int64_t i = 0; i < N; i++)
    if ((inputs[i] = mp_value_int(i)) == NULL)
      die("mp_value_int");
  mp_pool *p;
  if (mp_pool_create(&p, 2, NULL) < 0)
    die("mp_pool_create");
  map_rate(p, 0); /* warm-up */
  double c1[ROUNDS], def[ROUNDS], st[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    c1[r] = map_rate(p, 1);
    def[r] = map_rate(p, 0);
  }
  end_pool(p);
  for (int r = 0; r < ROUNDS; r++)
    st[r] = start_stop_ms();
  double c1m = bench_median(c1, ROUNDS), defm = bench_median(def, ROUNDS);
  double stm = bench_median(st, ROUNDS);

  if (argc > 1 && strcmp(argv[1], "--no-peers") == 0) { /* for profiling multiproc alone */
    printf("multiproc: chunksize 1 %.0f tasks/s, default %.0f tasks/s, start-stop %.1f ms\n", c1m,
           defm, stm);
    return 0;
  }
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench_pool.py %d %d", MP_BENCH_DIR, N, ROUNDS);
  char *py = bench_capture(cmd);
  double pc1 = py ? bench_field(py, "pool_c1") : -1, pdef = py ? bench_field(py, "pool_def") : -1;
  double ec1 = py ? bench_field(py, "ppe_c1") : -1, edef = py ? bench_field(py, "ppe_def") : -1;
  double pst = py ? bench_field(py, "start_ms") : -1;
  free(py);

  printf("map of %d trivial tasks (x*x) on 2 workers, median of %d (tasks/s)\n", N, ROUNDS);
  printf("  %-40s %12s %12s\n", "", "chunksize 1", "default");
  printf("  %-40s %12.0f %12.0f\n", "multiproc mp_pool_map", c1m, defm);
  printf("  %-40s %12.0f %12.0f\n", "Python Pool(2).map", pc1, pdef);
  printf("  %-40s %12.0f %12.0f\n", "Python ProcessPoolExecutor(2).map", ec1, edef);
  printf("pool start-up + one task + shutdown, median of %d (ms)\n", ROUNDS);
  printf("  %-40s %12.1f\n", "multiproc Pool(2)", stm);
  printf("  %-40s %12.1f\n", "Python Pool(2)", pst);
  if (pc1 > 0) {
    bench_target("pool_map_chunksize1_vs_python_pool", c1m / pc1, ">=", 10.0);
    bench_target("pool_map_default_vs_python_pool", defm / pdef, ">=", 2.0);
    bench_target("pool_map_chunksize1_vs_python_executor", c1m / ec1, ">=", 10.0);
    bench_target("pool_map_default_vs_python_executor", defm / edef, ">=", 2.0);
    bench_target("pool_start_stop_vs_python_pool", stm / pst, "<=", 1.0);
  } else {
    puts("bench_pool: Python's peers did not run (is /usr/bin/python3 there?)");
  }
  for (int64_t i = 0; i < N; i++)
    mp_value_free(inputs[i]);
  return 0;
}
