/* multiproc's Redis queue beside the plain redis-py list queue (one LPUSH per put, one
 * BRPOP per get: bench_redis.py) on one redis-server, which this program starts for itself
 * (tests/redis-fixture.sh, no persistence) on a free loopback port, and redis-benchmark's
 * pipelined LPUSH (4 clients, 16 deep) as the server's own limit. One producer process,
 * the consumer in this process, 64-byte messages, each checked (size, order, both stamps);
 * the clock runs from the producer's go to the last message checked, for every peer. The
 * multiproc queue runs tuned (pipeline 256: puts confirmed in batches; prefetch 256: a get
 * takes what is there) and with the defaults (each put and each get a round trip).
 *
 * The second case is the distributed pool (mp_redis_pool_create, workers in mp_worker_serve)
 * beside Celery and RQ on the same server: 2 workers, trivial tasks (i -> i + 1), every
 * result checked; workers are up before the clock starts, for every peer.
 * Linux only (the server and the Python peers are Linux programs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "multiproc.h"

enum { SIZE = 64, N_TUNED = 40000, N_SLOW = 4000, N_TASKS = 2000, N_RQ = 200 };

static char url[256], dir[256];
static int port;

typedef struct mp_peer {
  int count;
  size_t pipeline, prefetch;
} mp_peer;

/* args: url, name, count, pipeline. Waits for the go message on NAME-go, then puts. */
static int producer(mp_args *a) {
  const char *u, *name;
  int64_t count, pipeline;
  if (mp_args_get_str(a, 0, &u, NULL) || mp_args_get_str(a, 1, &name, NULL) ||
      mp_args_get_int(a, 2, &count) || mp_args_get_int(a, 3, &pipeline))
    return 90;
  char go_name[128];
  snprintf(go_name, sizeof go_name, "%s-go", name);
  mp_redis_opts o = {0};
  o.pipeline = (size_t)pipeline;
  mp_queue *q, *go;
  if (mp_redis_queue_create(&q, u, name, &o) < 0 ||
      mp_redis_queue_create(&go, u, go_name, NULL) < 0)
    return 91;
  void *m;
  size_t len;
  if (mp_queue_get(go, &m, &len, 60000) < 0)
    return 92;
  mp_free(m);
  unsigned char msg[SIZE] = {0};
  for (uint32_t seq = 0; seq < (uint32_t)count; seq++) {
    struct {
      uint32_t producer, seq;
      uint64_t stamp;
    } h = {0, seq, bench_stamp(0, seq)};
    memcpy(msg, &h, sizeof h);
    memcpy(msg + SIZE - 8, &h.stamp, 8);
    if (mp_queue_put(q, msg, SIZE, 60000) < 0)
      return 93;
  }
  int rc = mp_queue_flush(q, 60000) < 0 ? 94 : 0;
  mp_queue_free(q);
  mp_queue_free(go);
  return rc;
}

static double check(const void *m, size_t len, uint32_t seq) {
  uint64_t stamp, tail;
  uint32_t head[2];
  if (len != SIZE)
    return bench_fail("message %u has %zu bytes, expected %d", seq, len, SIZE);
  memcpy(head, m, 8);
  memcpy(&stamp, (const char *)m + 8, 8);
  memcpy(&tail, (const char *)m + SIZE - 8, 8);
  if (head[0] != 0 || head[1] != seq || stamp != bench_stamp(0, seq) || tail != stamp)
    return bench_fail("corrupt or out-of-order message %u", seq);
  return 0;
}

/* Messages per second through the Redis queue: put in a child, got and checked here. */
static double run_mp(void *ctx) {
  const mp_peer *pc = ctx;
  char name[64], go_name[80];
  snprintf(name, sizeof name, "bench-%llu", (unsigned long long)mp_monotonic_ns());
  snprintf(go_name, sizeof go_name, "%s-go", name);
  mp_redis_opts o = {0};
  o.prefetch = pc->prefetch;
  mp_queue *q = NULL, *go = NULL;
  mp_process *p = NULL;
  mp_args *a = NULL;
  double result = -1;
  if (mp_redis_queue_create(&q, url, name, &o) < 0 ||
      mp_redis_queue_create(&go, url, go_name, NULL) < 0) {
    result = bench_fail("mp_redis_queue_create: %s", mp_last_error());
    goto out;
  }
  if (mp_args_create(&a) < 0 || mp_args_add_str(a, url) < 0 || mp_args_add_str(a, name) < 0 ||
      mp_args_add_int(a, pc->count) < 0 || mp_args_add_int(a, (int64_t)pc->pipeline) < 0 ||
      bench_start_child(&p, producer, a) < 0) {
    result = bench_fail("starting the producer: %s", mp_last_error());
    goto out;
  }
  double t0 = bench_now_us();
  if (mp_queue_put(go, "go", 2, 0) < 0) {
    result = bench_fail("go: %s", mp_last_error());
    goto out;
  }
  uint32_t seq;
  for (seq = 0; seq < (uint32_t)pc->count; seq++) {
    void *m;
    size_t len;
    if (mp_queue_get(q, &m, &len, bench_remaining_ms()) < 0) {
      result = bench_fail("got %u of %d messages: %s", seq, pc->count, mp_last_error());
      break;
    }
    double bad = check(m, len, seq);
    mp_free(m);
    if (bad < 0) {
      result = bad;
      break;
    }
  }
  if (seq == (uint32_t)pc->count)
    result = pc->count / ((bench_now_us() - t0) / 1e6);
out:
  if (p) {
    int code = -1;
    if ((mp_process_join(p, bench_remaining_ms()) < 0 || mp_process_exitcode(p, &code) < 0 ||
         code != 0) &&
        result >= 0)
      result = bench_fail("the producer exited with %d", code);
    if (mp_process_is_alive(p))
      mp_process_kill(p);
    mp_process_free(p);
  }
  mp_args_free(a);
  mp_queue_free(q);
  mp_queue_free(go);
  mp_redis_queue_delete(url, name, 5000);
  mp_redis_queue_delete(url, go_name, 5000);
  return result;
}

/* ---- the distributed pool --------------------------------------------------------------- */

typedef struct pool_peer {
  int how; /* 0: map, chunksize 1; 1: apply_async per task; 2: map, default chunks */
} pool_peer;

static int inc(const mp_value *in, mp_value **out) {
  int64_t i = 0;
  if (mp_value_get_int(in, &i) < 0)
    return 1;
  *out = mp_value_int(i + 1);
  return 0;
}

/* args: url, pool name. Says "ready" on NAME-ready, then serves until killed. */
static int pool_worker(mp_args *a) {
  const char *u, *name;
  if (mp_args_get_str(a, 0, &u, NULL) || mp_args_get_str(a, 1, &name, NULL))
    return 90;
  char ready[128];
  snprintf(ready, sizeof ready, "%s-ready", name);
  mp_queue *q = NULL;
  if (mp_redis_queue_create(&q, u, ready, NULL) < 0 || mp_queue_put(q, "r", 1, 60000) < 0)
    return 91;
  mp_queue_free(q);
  return mp_worker_serve(u, name, NULL) < 0 ? 92 : 0;
}

static double run_tasks(mp_pool *pool, int how, mp_value **in, mp_value **out) {
  if (how != 1)
    return mp_pool_map(pool, inc, (const mp_value *const *)in, N_TASKS, how == 0 ? 1 : 0, out);
  static mp_result *rs[N_TASKS];
  int rc = 0, made = 0;
  for (; rc == 0 && made < N_TASKS; made++)
    rc = mp_pool_apply_async(pool, inc, in[made], &rs[made]);
  for (int i = 0; i < made; i++) {
    if (rc == 0)
      rc = mp_result_take(rs[i], &out[i], bench_remaining_ms());
    mp_result_free(rs[i]);
  }
  return rc;
}

/* Tasks per second through the Redis pool, 2 workers started (and ready) before the clock. */
static double run_pool(void *ctx) {
  const pool_peer *pc = ctx;
  char name[64], ready[80];
  snprintf(name, sizeof name, "bench-pool-%llu", (unsigned long long)mp_monotonic_ns());
  snprintf(ready, sizeof ready, "%s-ready", name);
  static mp_value *in[N_TASKS], *out[N_TASKS];
  mp_process *w[2] = {NULL, NULL};
  mp_pool *pool = NULL;
  mp_queue *rq = NULL;
  mp_args *a = NULL;
  double result = -1;
  for (int i = 0; i < N_TASKS; i++) {
    in[i] = mp_value_int(i);
    out[i] = NULL;
  }
  int rc = mp_redis_pool_create(&pool, url, name, NULL);
  rc = rc ? rc : mp_redis_queue_create(&rq, url, ready, NULL);
  rc = rc ? rc : mp_args_create(&a);
  rc = rc ? rc : mp_args_add_str(a, url);
  rc = rc ? rc : mp_args_add_str(a, name);
  for (int i = 0; rc == 0 && i < 2; i++)
    rc = bench_start_child(&w[i], pool_worker, a);
  for (int i = 0; rc == 0 && i < 2; i++) {
    void *m = NULL;
    size_t len;
    rc = mp_queue_get(rq, &m, &len, bench_remaining_ms());
    mp_free(m);
  }
  if (rc < 0) {
    result = bench_fail("starting the pool and its workers: %s", mp_last_error());
    goto out;
  }
  double t0 = bench_now_us();
  if (run_tasks(pool, pc->how, in, out) < 0) {
    result = bench_fail("the tasks: %s", mp_last_error());
    goto out;
  }
  double t = bench_now_us() - t0;
  result = N_TASKS / (t / 1e6);
  for (int i = 0; i < N_TASKS; i++) {
    int64_t v = -1;
    if (mp_value_get_int(out[i], &v) < 0 || v != i + 1) {
      result = bench_fail("task %d gave a wrong result", i);
      break;
    }
  }
out:
  mp_pool_free(pool);
  for (int i = 0; i < 2; i++)
    if (w[i]) {
      mp_process_kill(w[i]);
      mp_process_join(w[i], bench_remaining_ms());
      mp_process_free(w[i]);
    }
  for (int i = 0; i < N_TASKS; i++) {
    mp_value_free(in[i]);
    mp_value_free(out[i]);
  }
  mp_args_free(a);
  mp_queue_free(rq);
  mp_redis_queue_delete(url, ready, 5000);
  return result;
}

/* redis-benchmark's LPUSH, 4 clients pipelined 16 deep: what this server can take. */
static double run_limit(void *ctx) {
  (void)ctx;
  char p[16];
  snprintf(p, sizeof p, "%d", port);
  const char *argv[] = {
      "redis-benchmark", "-p", p, "-t", "lpush", "-n", "200000", "-P", "16", "-c", "4",
      "--csv",           NULL};
  mp_popen_opts o = {0};
  o.search_path = 1;
  o.std_out.mode = MP_STDIO_PIPE;
  o.std_err.mode = MP_STDIO_DEVNULL;
  o.timeout_ms = bench_remaining_ms();
  mp_run_result r;
  if (mp_run(argv, &o, &r) < 0 || r.returncode != 0) {
    mp_run_result_free(&r);
    return bench_fail("redis-benchmark failed: %s", mp_last_error());
  }
  const char *at = r.out ? strstr(r.out, "\"LPUSH\",\"") : NULL;
  double v = at ? atof(at + strlen("\"LPUSH\",\"")) : -1;
  mp_run_result_free(&r);
  return v > 0 ? v : bench_fail("redis-benchmark printed no LPUSH rate");
}

static int fixture(const char *cmd, const char *extra) {
  char line[1024];
  snprintf(line, sizeof line, "sh %s/../tests/redis-fixture.sh %s %s %s >/dev/null", MP_BENCH_DIR,
           cmd, dir, extra);
  return system(line);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  bench_init("redis", argc, argv);
  snprintf(dir, sizeof dir, "/tmp/mp-bench-redis-%lld", (long long)mp_getpid());
  char path[300];
  snprintf(path, sizeof path, "%s/url", dir);
  FILE *f = NULL;
  if (fixture("start", "--appendonly no") != 0 || (f = fopen(path, "r")) == NULL ||
      fgets(url, sizeof url, f) == NULL) {
    bench_note("redis-server did not start (is Debian's redis-server installed?)");
    if (f)
      fclose(f);
    return bench_finish() | 1;
  }
  fclose(f);
  url[strcspn(url, "\n")] = '\0';
  port = atoi(strrchr(url, ':') + 1);
  bench_case *c = bench_case_new("redis", "put+get 64 B, 1 producer -> 1 consumer", "msg/s", 1);
  static mp_peer tuned = {N_TUNED, 256, 256}, defaults = {N_SLOW, 0, 1};
  bench_peer(c, "multiproc Redis queue (pipeline, prefetch 256)", run_mp, &tuned);
  bench_peer(c, "multiproc Redis queue (defaults)", run_mp, &defaults);
  char args[64];
  snprintf(args, sizeof args, "rate %d %d %d", port, SIZE, N_SLOW);
  bench_python_peer(c, "Python redis-py list LPUSH/BRPOP", "bench_redis.py", args);
  bench_peer(c, "redis-benchmark LPUSH -P16 -c4 (limit)", run_limit, NULL);
  bench_case_run(c);
  double mp = bench_case_median(c, "multiproc Redis queue (pipeline, prefetch 256)");
  double limit = bench_case_median(c, "redis-benchmark LPUSH -P16 -c4 (limit)");
  if (mp > 0 && limit > 0)
    bench_note("the tuned queue reaches %.1f%% of redis-benchmark's pipelined LPUSH rate (a "
               "message is a put and a get; LPUSH is one command)",
               100 * mp / limit);
  bench_target("redis_queue_vs_redis_py_list", c, "multiproc Redis queue (pipeline, prefetch 256)",
               "Python redis-py list LPUSH/BRPOP", ">=", 5);

  bench_case *pc = bench_case_new("redis_pool", "2,000 trivial tasks, 2 workers", "tasks/s", 1);
  static pool_peer map1 = {0}, apply = {1}, mapd = {2};
  bench_peer(pc, "multiproc Redis pool map, chunksize 1", run_pool, &map1);
  bench_peer(pc, "multiproc Redis pool apply_async x2000", run_pool, &apply);
  bench_peer(pc, "multiproc Redis pool map, default chunks", run_pool, &mapd);
  snprintf(args, sizeof args, "celery %d %d", port, N_TASKS);
  bench_python_peer(pc, "Celery 5.2 (Redis broker+backend)", "bench_redis.py", args);
  snprintf(args, sizeof args, "rq %d %d", port, N_RQ);
  bench_python_peer(pc, "RQ 1.13 (200 jobs a round)", "bench_redis.py", args);
  bench_case_run(pc);
  bench_note("RQ runs 200 jobs a round, not 2,000: at its rate here 2,000 would overrun the "
             "peer's time budget; its figure is a rate all the same");
  bench_target("redis_pool_vs_celery", pc, "multiproc Redis pool map, chunksize 1",
               "Celery 5.2 (Redis broker+backend)", ">=", 20);
  fixture("stop", "");
  char rm[400];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  if (system(rm) != 0)
    bench_note("could not remove %s", dir);
  return bench_finish();
}
