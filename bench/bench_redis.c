/* multiproc's Redis queue beside a plain redis-py list queue (LPUSH/BRPOP, bench_redis.py)
 * on the same redis-server, which this program starts (tests/redis-fixture.sh, without
 * persistence) on a free loopback port, and redis-benchmark's pipelined LPUSH (4 clients,
 * 16 deep) as the server's own limit. One producer process, this process the consumer,
 * 64-byte messages; every message is verified (size, order, a stamp at both ends) and the
 * clock runs from the first message received to the last, the same for every peer.
 * Rounds interleave the peers (A B C D, A B C D, ...); the table gives each round and the
 * medians, the ratios their spread. The multiproc queue runs twice: tuned (pipeline 256,
 * prefetch 256: puts confirmed in batches, gets taking what is there) and with defaults
 * (each put waits for Redis, each get takes one message). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benchutil.h"
#include "multiproc.h"

enum { ROUNDS = 5, SIZE = 64, N_TUNED = 40000, N_SLOW = 4000 };

static char url[256], dir[256];
static int port;

/* args: url, name, count, pipeline. */
static int producer(mp_args *a) {
  const char *u, *name;
  int64_t count, pipeline;
  if (mp_args_get_str(a, 0, &u, NULL) || mp_args_get_str(a, 1, &name, NULL) ||
      mp_args_get_int(a, 2, &count) || mp_args_get_int(a, 3, &pipeline))
    return 90;
  mp_redis_opts o = {0};
  o.pipeline = (size_t)pipeline;
  mp_queue *q;
  if (mp_redis_queue_create(&q, u, name, &o) < 0)
    return 91;
  unsigned char m[SIZE] = {0};
  for (uint32_t seq = 0; seq < (uint32_t)count; seq++) {
    struct bench_hdr h = {0, seq, bench_stamp(0, seq)};
    memcpy(m, &h, sizeof h);
    memcpy(m + SIZE - 8, &h.stamp, 8);
    if (mp_queue_put(q, m, SIZE, MP_FOREVER) < 0)
      return 92;
  }
  int rc = mp_queue_flush(q, 30000) < 0 ? 93 : 0;
  mp_queue_free(q);
  return rc;
}

static void die(const char *what) {
  fprintf(stderr, "bench_redis: %s: %s\n", what, mp_last_error());
  exit(2);
}

/* Messages per second through the Redis queue (put in the child, get here). */
static double run_mp(int count, size_t pipeline, size_t prefetch) {
  char name[64];
  snprintf(name, sizeof name, "bench-%llu", (unsigned long long)mp_monotonic_ns());
  mp_redis_opts o = {0};
  o.prefetch = prefetch;
  mp_queue *q;
  if (mp_redis_queue_create(&q, url, name, &o) < 0)
    die("mp_redis_queue_create");
  mp_args *a;
  mp_process *p;
  if (mp_args_create(&a) < 0 || mp_args_add_str(a, url) < 0 || mp_args_add_str(a, name) < 0 ||
      mp_args_add_int(a, count) < 0 || mp_args_add_int(a, (int64_t)pipeline) < 0 ||
      mp_process_create(&p, producer, a, NULL) < 0 || mp_process_start(p) < 0)
    die("starting the producer");
  mp_args_free(a);
  uint64_t first = 0, last = 0;
  for (uint32_t seq = 0; seq < (uint32_t)count; seq++) {
    void *m;
    size_t len;
    if (mp_queue_get(q, &m, &len, 10000) < 0)
      die("mp_queue_get");
    last = mp_monotonic_ns();
    if (seq == 0)
      first = last;
    struct bench_hdr h;
    uint64_t tail;
    memcpy(&h, m, sizeof h);
    memcpy(&tail, (char *)m + SIZE - 8, 8);
    if (len != SIZE || h.producer != 0 || h.seq != seq || h.stamp != bench_stamp(0, seq) ||
        tail != h.stamp) {
      fprintf(stderr, "bench_redis: corrupt or out-of-order message %u\n", seq);
      exit(3);
    }
    mp_free(m);
  }
  int code = -1;
  if (mp_process_join(p, 30000) < 0 || mp_process_exitcode(p, &code) < 0 || code != 0)
    die("the producer failed");
  mp_process_free(p);
  mp_queue_free(q);
  mp_redis_queue_delete(url, name, 5000);
  return (count - 1) / ((double)(last - first) / 1e9);
}

static double run_python(int count) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench_redis.py %d %d %d", MP_BENCH_DIR, port, SIZE,
           count);
  char *out = bench_capture(cmd);
  double r = out ? bench_field(out, "msgs_per_s") : -1;
  free(out);
  if (r <= 0) {
    fprintf(stderr, "bench_redis: the redis-py peer failed\n");
    exit(2);
  }
  return r;
}

/* redis-benchmark's LPUSH, 4 clients pipelined 16 deep: what this server can take. */
static double run_limit(void) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "redis-benchmark -p %d -t lpush -n 200000 -P 16 -c 4 --csv", port);
  char *out = bench_capture(cmd);
  double r = -1;
  const char *p = out ? strstr(out, "\"LPUSH\",\"") : NULL;
  if (p)
    r = atof(p + strlen("\"LPUSH\",\""));
  free(out);
  if (r <= 0) {
    fprintf(stderr, "bench_redis: redis-benchmark failed\n");
    exit(2);
  }
  return r;
}

static void fixture(const char *cmd, const char *extra) {
  char line[1024];
  snprintf(line, sizeof line, "sh %s/../tests/redis-fixture.sh %s %s %s >/dev/null", MP_BENCH_DIR,
           cmd, dir, extra);
  if (system(line) != 0) {
    fprintf(stderr, "bench_redis: redis-fixture.sh %s failed\n", cmd);
    exit(2);
  }
}

static void spread(const char *label, double *ratios) {
  double lo = ratios[0], hi = ratios[0];
  for (int i = 1; i < ROUNDS; i++) {
    lo = ratios[i] < lo ? ratios[i] : lo;
    hi = ratios[i] > hi ? ratios[i] : hi;
  }
  printf("%-34s median %.2fx (rounds %.2f..%.2f)\n", label, bench_median(ratios, ROUNDS), lo, hi);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  snprintf(dir, sizeof dir, "/tmp/mp-bench-redis-%lld", (long long)mp_getpid());
  fixture("start", "--appendonly no");
  char path[300];
  snprintf(path, sizeof path, "%s/url", dir);
  FILE *f = fopen(path, "r");
  if (f == NULL || fgets(url, sizeof url, f) == NULL)
    die("reading the server's URL");
  fclose(f);
  url[strcspn(url, "\n")] = '\0';
  port = atoi(strrchr(url, ':') + 1);
  printf("redis-server %s; %d B messages, 1 producer process -> 1 consumer; %d rounds\n", url, SIZE,
         ROUNDS);
  printf("%-6s %14s %14s %14s %16s   (messages/s; LPUSH/s)\n", "round", "mp tuned", "mp defaults",
         "redis-py list", "LPUSH -P16 -c4");
  double tuned[ROUNDS], plain[ROUNDS], py[ROUNDS], limit[ROUNDS];
  double r_tuned[ROUNDS], r_plain[ROUNDS], r_limit[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    tuned[i] = run_mp(N_TUNED, 256, 256);
    py[i] = run_python(N_SLOW);
    plain[i] = run_mp(N_SLOW, 0, 1);
    limit[i] = run_limit();
    r_tuned[i] = tuned[i] / py[i];
    r_plain[i] = plain[i] / py[i];
    r_limit[i] = tuned[i] / limit[i];
    printf("%-6d %14.0f %14.0f %14.0f %16.0f\n", i + 1, tuned[i], plain[i], py[i], limit[i]);
    fflush(stdout);
  }
  double m_tuned = bench_median(tuned, ROUNDS), m_limit = bench_median(limit, ROUNDS);
  printf("%-6s %14.0f %14.0f %14.0f %16.0f\n", "median", m_tuned, bench_median(plain, ROUNDS),
         bench_median(py, ROUNDS), m_limit);
  spread("mp tuned / redis-py list", r_tuned);
  spread("mp defaults / redis-py list", r_plain);
  printf("mp tuned / pipelined LPUSH limit:  median %.3f (%.1f%%); one message is a put and a "
         "get\n",
         bench_median(r_limit, ROUNDS), 100 * bench_median(r_limit, ROUNDS));
  bench_target("redis_queue_vs_redis_py_list", bench_median(r_tuned, ROUNDS), ">=", 5);
  fixture("stop", "");
  char rm[400];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  return system(rm) == 0 ? 0 : 1;
}
