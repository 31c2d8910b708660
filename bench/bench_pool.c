/* Pool throughput: map of trivial tasks (x*x) on two workers, with chunksize 1 and with
 * the default chunking, beside Python's Pool(2).map and ProcessPoolExecutor(2).map on the
 * same work; and a pool's start-up + one task + shutdown beside Python's. Every result is
 * checked. The multiproc pool is made once and warmed; each Python round makes its own
 * pool and warms it before its clock starts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

#define N_C1 "30000"    /* chunksize 1: a message per task both ways */
#define N_DEF "1000000" /* default chunks: big enough for a round to last ~50 ms */
#define STARTS 5        /* pool start-ups per round */

static int square(const mp_value *in, mp_value **out) {
  int64_t x = 0;
  if (mp_value_get_int(in, &x) < 0)
    return -1;
  *out = mp_value_int(x * x);
  return *out ? 0 : -1;
}

static mp_value **inputs, **outputs;
static mp_pool *pool;

struct map_job {
  size_t n, chunksize;
};

/* One map of n tasks on the warm pool: tasks per second, every output checked. */
static double map_rate(void *arg) {
  const struct map_job *job = arg;
  double t0 = bench_now_us();
  if (mp_pool_map(pool, square, (const mp_value *const *)inputs, job->n, job->chunksize, outputs) <
      0)
    return bench_fail("mp_pool_map: %s", mp_last_error());
  double rate = (double)job->n * 1e6 / (bench_now_us() - t0);
  int64_t bad = -1;
  for (size_t i = 0; i < job->n; i++) {
    int64_t v = -1;
    if (bad < 0 && (mp_value_get_int(outputs[i], &v) < 0 || v != (int64_t)(i * i)))
      bad = (int64_t)i;
    mp_value_free(outputs[i]);
  }
  return bad < 0 ? rate : bench_fail("output %lld is wrong", (long long)bad);
}

static int end_pool(mp_pool *p) {
  int rc = mp_pool_close(p) < 0 || mp_pool_join(p, bench_remaining_ms()) < 0;
  mp_pool_free(p); /* terminates what a failed join left */
  return rc ? -1 : 0;
}

/* Create, one task, close, join: what a short-lived pool costs, in milliseconds. */
static double start_stop_ms(void *ctx) {
  (void)ctx;
  mp_pool *p = NULL;
  mp_value *in = mp_value_int(3), *out = NULL;
  int64_t got = 0;
  double t0 = bench_now_us();
  int rc = mp_pool_create(&p, 2, NULL) < 0 || mp_pool_apply(p, square, in, &out) < 0;
  if (p && end_pool(p) != 0)
    rc = 1;
  double ms = (bench_now_us() - t0) / 1000;
  if (!rc && (mp_value_get_int(out, &got) < 0 || got != 9))
    rc = 1;
  mp_value_free(in);
  mp_value_free(out);
  return rc ? bench_fail("start-up, task or shutdown failed: %s", mp_last_error()) : ms;
}

static double start_stops(void *ctx) { return bench_median_of(STARTS, start_stop_ms, ctx); }

/* A map case: the warm multiproc pool, Python's Pool and ProcessPoolExecutor on the same
 * n and chunksize ("<n> <chunksize>" for the Python peer; 0 is the default). */
static bench_case *map_case(const char *name, struct map_job *job, const char *py_args) {
  char pool_args[64], executor_args[64];
  snprintf(pool_args, sizeof pool_args, "map pool %s", py_args);
  snprintf(executor_args, sizeof executor_args, "map executor %s", py_args);
  bench_case *c = bench_case_new("pool", name, "tasks/s", 1);
  bench_peer(c, "multiproc mp_pool_map", map_rate, job);
  bench_python_peer(c, "Python Pool(2).map", "bench_pool.py", pool_args);
  bench_python_peer(c, "Python ProcessPoolExecutor(2).map", "bench_pool.py", executor_args);
  bench_case_run(c);
  return c;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  bench_init("pool", argc, argv);
  size_t n_c1 = (size_t)atol(N_C1), n_def = (size_t)atol(N_DEF);
  inputs = malloc(sizeof *inputs * n_def);
  outputs = malloc(sizeof *outputs * n_def);
  for (size_t i = 0; inputs && i < n_def; i++)
    if ((inputs[i] = mp_value_int((int64_t)i)) == NULL)
      return 2;
  if (!inputs || !outputs || mp_pool_create(&pool, 2, NULL) < 0) {
    fprintf(stderr, "bench_pool: set-up failed: %s\n", mp_last_error());
    return 2;
  }
  struct map_job c1 = {n_c1, 1}, def = {n_def, 0};
  bench_case *m1 = map_case("map of " N_C1 " x*x, chunksize 1", &c1, N_C1 " 1");
  /* ProcessPoolExecutor.map's own default chunksize is 1; its row here uses Pool's rule. */
  bench_case *md = map_case("map of " N_DEF " x*x, default chunks", &def, N_DEF " 0");
  end_pool(pool);
  for (size_t i = 0; i < n_def; i++)
    mp_value_free(inputs[i]);
  free(inputs);
  free(outputs);

  bench_case *ss = bench_case_new("pool", "Pool(2) start-up + one task + shutdown", "ms", 0);
  bench_peer(ss, "multiproc Pool(2)", start_stops, NULL);
  bench_python_peer(ss, "Python Pool(2)", "bench_pool.py", "startstop 5");
  bench_case_run(ss);

  const char *pp = "Python Pool(2).map", *pe = "Python ProcessPoolExecutor(2).map";
  bench_target("pool_map_chunksize1_vs_python_pool", m1, "multiproc mp_pool_map", pp, ">=", 10.0);
  bench_target("pool_map_default_vs_python_pool", md, "multiproc mp_pool_map", pp, ">=", 2.0);
  bench_target("pool_map_chunksize1_vs_python_executor", m1, "multiproc mp_pool_map", pe,
               ">=", 10.0);
  bench_target("pool_map_default_vs_python_executor", md, "multiproc mp_pool_map", pe, ">=", 2.0);
  bench_target("pool_start_stop_vs_python_pool", ss, "multiproc Pool(2)", "Python Pool(2)",
               "<=", 1.0);
  return bench_finish();
}
