/* Shared by the Redis tests: see redisutil.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redisutil.h"
#include "testutil.h"

const char *mp_test_redis_url_of(const char *dir, char *buf, size_t size) {
  char path[1024];
#ifdef _WIN32
  snprintf(path, sizeof path, "Z:%s/url", dir); /* Wine reaches the Unix path through Z: */
#else
  snprintf(path, sizeof path, "%s/url", dir);
#endif
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  assert_non_null(fgets(buf, (int)size, f));
  fclose(f);
  buf[strcspn(buf, "\r\n")] = '\0';
  return buf;
}

const char *mp_test_redis_url(void) {
  static char url[256];
  return url[0] ? url : mp_test_redis_url_of(MP_REDIS_DIR, url, sizeof url);
}

/* args: url, name, producer id, count. */
static int producer(mp_args *a) {
  const char *u, *name;
  int64_t id, count;
  if (mp_args_get_str(a, 0, &u, NULL) || mp_args_get_str(a, 1, &name, NULL) ||
      mp_args_get_int(a, 2, &id) || mp_args_get_int(a, 3, &count))
    return 90;
  mp_redis_opts o = {0};
  o.joinable = 1;
  o.pipeline = 16;
  mp_queue *q;
  if (mp_redis_queue_create(&q, u, name, &o) < 0)
    return 91;
  unsigned char buf[sizeof(struct mp_test_msg_hdr) + 500];
  for (uint32_t s = 0; s < (uint32_t)count; s++) {
    size_t n = mp_test_make_msg(buf, (uint32_t)id, s, mp_test_rand_len((uint32_t)id, s, 500));
    if (mp_queue_put(q, buf, n, MP_FOREVER) < 0) {
      fprintf(stderr, "producer %d: put %u: %s\n", (int)id, s, mp_last_error());
      return 92;
    }
  }
  int rc = 0;
  if (mp_queue_flush(q, MP_FOREVER) < 0) {
    fprintf(stderr, "producer %d: flush: %s\n", (int)id, mp_last_error());
    rc = 93;
  }
  mp_queue_free(q);
  return rc;
}

/* args: url, name, results name, lease_ms. */
static int consumer(mp_args *a) {
  const char *u, *name, *results;
  int64_t lease;
  if (mp_args_get_str(a, 0, &u, NULL) || mp_args_get_str(a, 1, &name, NULL) ||
      mp_args_get_str(a, 2, &results, NULL) || mp_args_get_int(a, 3, &lease))
    return 90;
  mp_redis_opts o = {0};
  o.joinable = 1;
  o.prefetch = 8;
  o.lease_ms = (int)lease;
  mp_queue *q, *r;
  if (mp_redis_queue_create(&q, u, name, &o) < 0)
    return 91;
  o.joinable = 0;
  o.prefetch = 0;
  o.pipeline = 16;
  if (mp_redis_queue_create(&r, u, results, &o) < 0)
    return 92;
  int rc = 0;
  for (;;) {
    void *m;
    size_t len;
    struct mp_test_msg_hdr h;
    int got = mp_queue_get(q, &m, &len, MP_FOREVER);
    if (got == MP_EEOF)
      break;
    if (got < 0 || mp_test_check_msg(m, len, &h) != 0) {
      fprintf(stderr, "consumer: get: %d %s\n", got, got < 0 ? mp_last_error() : "bad message");
      rc = 93;
      break;
    }
    mp_free(m);
    uint32_t id[2] = {h.producer, h.seq};
    if (mp_queue_put(r, id, sizeof id, MP_FOREVER) < 0 || mp_queue_task_done(q) < 0) {
      fprintf(stderr, "consumer: report: %s\n", mp_last_error());
      rc = 94;
      break;
    }
  }
  if (mp_queue_flush(r, MP_FOREVER) < 0)
    rc = 95;
  mp_queue_free(q);
  mp_queue_free(r);
  return rc;
}

static mp_process *spawn(mp_target_fn fn, mp_args *a) {
  mp_process_opts po = {0};
  po.method = MP_START_SPAWN; /* a fresh program: nothing shared but the arguments */
  mp_process *p;
  assert_mp_ok(mp_process_create(&p, fn, a, &po));
  assert_mp_ok(mp_process_start(p));
  mp_args_free(a);
  return p;
}

static mp_args *url_and_name(const char *url, const char *name) {
  mp_args *a;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_str(a, url));
  assert_mp_ok(mp_args_add_str(a, name));
  return a;
}

mp_process *mp_test_redis_producer(const char *url, const char *name, int id, int count) {
  mp_args *a = url_and_name(url, name);
  assert_mp_ok(mp_args_add_int(a, id));
  assert_mp_ok(mp_args_add_int(a, count));
  return spawn(producer, a);
}

mp_process *mp_test_redis_consumer(const char *url, const char *name, const char *results,
                                   int lease_ms) {
  mp_args *a = url_and_name(url, name);
  assert_mp_ok(mp_args_add_str(a, results));
  assert_mp_ok(mp_args_add_int(a, lease_ms));
  return spawn(consumer, a);
}

void mp_test_get_str(mp_queue *q, const char *want, int timeout_ms) {
  void *buf;
  size_t len;
  assert_mp_ok(mp_queue_get(q, &buf, &len, timeout_ms));
  assert_int_equal(len, strlen(want));
  assert_memory_equal(buf, want, len);
  mp_free(buf);
}

void mp_test_join_ok(mp_process *p) {
  int code;
  assert_mp_ok(mp_process_join(p, 120000));
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
}

void mp_test_redis_check_results(const char *url, const char *results, int producers,
                                 int per_producer, void (*midway)(void), int after) {
  mp_queue *r;
  assert_mp_ok(mp_redis_queue_create(&r, url, results, NULL));
  unsigned char *seen = calloc((size_t)producers * (size_t)per_producer, 1);
  assert_non_null(seen);
  for (int i = 0; i < producers * per_producer; i++) {
    void *m;
    size_t len;
    uint32_t id[2];
    if (midway && i == after)
      midway();
    assert_mp_ok(mp_queue_get(r, &m, &len, 60000));
    assert_int_equal(len, sizeof id);
    memcpy(id, m, sizeof id);
    mp_free(m);
    assert_true(id[0] < (uint32_t)producers && id[1] < (uint32_t)per_producer);
    assert_int_equal(seen[id[0] * (uint32_t)per_producer + id[1]]++, 0); /* never twice */
  }
  void *m;
  size_t len;
  assert_mp(MP_EEMPTY, mp_queue_get(r, &m, &len, 0)); /* and nothing else */
  free(seen);
  mp_queue_free(r);
}
