/* Wire compatibility of the Redis queue with a Python program (tests/interop/redis_peer.py:
 * Debian's python3 with redis-py and msgpack, written from docs/redis.md): bytes and
 * MessagePack values both ways on plain queues, a Python worker on a joinable queue whose
 * task_done lets a C join return, and Python puts through both documented paths. Linux. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redisutil.h"
#include "testutil.h"

static char names[3][64];

static const char *fresh(int slot, const char *what) {
  snprintf(names[slot], sizeof names[slot], "%s-%lld", what, (long long)mp_getpid());
  assert_mp_ok(mp_redis_queue_delete(mp_test_redis_url(), names[slot], 5000));
  return names[slot];
}

/* Starts redis_peer.py with its arguments after the URL; its output is captured. */
static mp_popen *peer(const char *mode, const char *a, const char *b, const char *c) {
  const char *argv[] = {
      MP_PYTHON3, MP_INTEROP_DIR "/redis_peer.py", mp_test_redis_url(), mode, a, b, c, NULL};
  mp_popen_opts o = {0};
  o.std_out.mode = MP_STDIO_PIPE;
  o.std_err.mode = MP_STDIO_STDOUT;
  mp_popen *p;
  assert_mp_ok(mp_popen_create(&p, argv, &o));
  return p;
}

static void peer_done(mp_popen *p) {
  char *out = NULL;
  size_t len;
  int code = -1;
  assert_mp_ok(mp_popen_communicate(p, NULL, 0, &out, &len, NULL, NULL, 60000));
  assert_mp_ok(mp_popen_returncode(p, &code));
  if (code != 0)
    fail_msg("redis_peer.py exited with %d:\n%s", code, out);
  assert_non_null(strstr(out, "done"));
  mp_free(out);
  mp_popen_free(p);
}

static mp_queue *open_q(const char *name, int joinable) {
  mp_redis_opts o = {0};
  o.joinable = joinable;
  mp_queue *q;
  assert_mp_ok(mp_redis_queue_create(&q, mp_test_redis_url(), name, &o));
  return q;
}

static mp_value *value_for(int i) {
  switch (i % 6) {
  case 0: return mp_value_int(-1000000007LL * i);
  case 1: return mp_value_str("caf\xc3\xa9");
  case 2: return mp_value_bytes("\x00\x01\xfe", 3);
  case 3: return mp_value_double(i / 8.0);
  case 4: {
    mp_value *d = mp_value_dict();
    mp_value_dict_set(d, mp_value_str("n"), mp_value_int(i));
    mp_value_dict_set(d, mp_value_str("none"), mp_value_nil());
    return d;
  }
  default: {
    mp_value *l = mp_value_list();
    mp_value_append(l, mp_value_bool(1));
    mp_value_append(l, mp_value_list());
    return l;
  }
  }
}

static void c_and_python_exchange_both_ways(void **state) {
  (void)state;
  enum { N = 60 };
  const char *in = fresh(0, "py-in"), *out = fresh(1, "py-out");
  mp_queue *qi = open_q(in, 0), *qo = open_q(out, 0);
  char count[16];
  snprintf(count, sizeof count, "%d", N);
  mp_popen *p = peer("echo", in, out, count);
  for (int i = 0; i < N; i++) {
    char m[32];
    snprintf(m, sizeof m, "c-%d", i);
    assert_mp_ok(mp_queue_put(qi, m, strlen(m), 0));
  }
  for (int i = 0; i < N; i++) {
    mp_value *v = value_for(i);
    assert_mp_ok(mp_queue_put_value(qi, v, 0));
    mp_value_free(v);
  }
  for (int i = 0; i < N; i++) {
    char want[40];
    snprintf(want, sizeof want, "py:c-%d", i);
    mp_test_get_str(qo, want, 20000);
  }
  for (int i = 0; i < N; i++) {
    mp_value *got, *want = mp_value_list();
    mp_value_append(want, mp_value_str("py"));
    mp_value_append(want, value_for(i));
    assert_mp_ok(mp_queue_get_value(qo, &got, 20000));
    assert_true(mp_value_equal(got, want));
    mp_value_free(got);
    mp_value_free(want);
  }
  peer_done(p);
  mp_queue_free(qi);
  mp_queue_free(qo);
}

static void python_works_a_joinable_queue(void **state) {
  (void)state;
  enum { N = 40 };
  const char *tasks = fresh(0, "py-tasks"), *results = fresh(1, "py-results");
  mp_queue *t = open_q(tasks, 1), *r = open_q(results, 0);
  mp_popen *p = peer("work", tasks, results, NULL);
  for (int i = 0; i < N; i++) {
    mp_value *v = mp_value_int(i);
    assert_mp_ok(mp_queue_put_value(t, v, 0));
    mp_value_free(v);
  }
  assert_mp_ok(mp_queue_join(t, 30000)); /* Python's task_done calls end it */
  assert_mp_ok(mp_queue_close(t));       /* and Python's get sees the close */
  peer_done(p);
  int seen[N] = {0};
  for (int i = 0; i < N; i++) {
    mp_value *v;
    int64_t sq;
    assert_mp_ok(mp_queue_get_value(r, &v, 5000));
    assert_mp_ok(mp_value_get_int(v, &sq));
    mp_value_free(v);
    int64_t root = 0;
    while (root * root < sq)
      root++;
    assert_true(root < N && root * root == sq);
    assert_int_equal(seen[root]++, 0);
  }
  mp_queue_free(t);
  mp_queue_free(r);
}

static void python_puts_by_xadd_and_by_the_script(void **state) {
  (void)state;
  const char *out = fresh(0, "py-produce");
  mp_queue *q = open_q(out, 0);
  peer_done(peer("produce", out, "20", NULL));
  for (int i = 0; i < 20; i++) {
    char want[16];
    snprintf(want, sizeof want, "py-%d", i);
    mp_test_get_str(q, want, 5000);
  }
  mp_queue_free(q);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(c_and_python_exchange_both_ways),
      cmocka_unit_test(python_works_a_joinable_queue),
      cmocka_unit_test(python_puts_by_xadd_and_by_the_script),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
