/* The Redis-backed queue against a real redis-server (the ctest fixture redis-fixture.sh
 * starts one on a free loopback port): URLs and options, every value type, a plain queue
 * and a joinable one behaving as the local queue does, AUTH and ACLs, Redis unreachable,
 * pipelining and prefetch, threads on one handle, and producers and consumers in separate
 * spawned processes that share nothing but the URL. Runs on Linux and under Wine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redisutil.h"
#include "testutil.h"

static char name_buf[64];

/* The fixture's URL with user info: "redis://USERINFO@127.0.0.1:port/0". */
static const char *url_as(const char *userinfo, char *buf, size_t size) {
  snprintf(buf, size, "redis://%s@%s", userinfo, mp_test_redis_url() + strlen("redis://"));
  return buf;
}

/* A queue name of this process and test, removed from Redis first. */
static const char *fresh(const char *test) {
  snprintf(name_buf, sizeof name_buf, "%s-%lld", test, (long long)mp_getpid());
  assert_mp_ok(mp_redis_queue_delete(mp_test_redis_url(), name_buf, 5000));
  return name_buf;
}

static mp_queue *open_q(const char *name, int joinable) {
  mp_redis_opts o = {0};
  o.joinable = joinable;
  mp_queue *q = NULL;
  assert_mp_ok(mp_redis_queue_create(&q, mp_test_redis_url(), name, &o));
  return q;
}

static void put_str(mp_queue *q, const char *s) { assert_mp_ok(mp_queue_put(q, s, strlen(s), 0)); }

/* ---- arguments ------------------------------------------------------------------------ */

static void bad_urls_names_and_options_are_refused(void **state) {
  (void)state;
  mp_queue *q = (mp_queue *)1;
  static const char *bad_urls[] = {"http://127.0.0.1:6379/0",
                                   "redis://",
                                   "redis://:6379/0",
                                   "redis://127.0.0.1:0/0",
                                   "redis://127.0.0.1:65536/0",
                                   "redis://127.0.0.1:x/0",
                                   "redis://127.0.0.1:6379/db",
                                   "redis://127.0.0.1:6379/0?timeout=1",
                                   "redis://alice@127.0.0.1:6379/0",
                                   "redis://:%zz@127.0.0.1/0",
                                   "redis://:%00@127.0.0.1/0",
                                   "redis://[::1/0",
                                   "redis://bad host/0"};
  for (size_t i = 0; i < sizeof bad_urls / sizeof *bad_urls; i++) {
    assert_mp(MP_EINVAL, mp_redis_queue_create(&q, bad_urls[i], "x", NULL));
    assert_null(q);
  }
  char long_url[3000];
  memset(long_url, 'a', sizeof long_url - 1);
  memcpy(long_url, "redis://", 8);
  long_url[sizeof long_url - 1] = '\0';
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, long_url, "x", NULL));
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, NULL, "x", NULL));
  assert_mp(MP_EINVAL, mp_redis_queue_create(NULL, mp_test_redis_url(), "x", NULL));
  static const char *bad_names[] = {"", "a{b", "a}b", "a b", "tab\there"};
  for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++)
    assert_mp(MP_EINVAL, mp_redis_queue_create(&q, mp_test_redis_url(), bad_names[i], NULL));
  char long_name[300];
  memset(long_name, 'n', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, mp_test_redis_url(), long_name, NULL));
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, mp_test_redis_url(), NULL, NULL));
  mp_redis_opts o = {0};
  o.prefetch = 257;
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, mp_test_redis_url(), "x", &o));
  o.prefetch = 0;
  o.lease_ms = 50;
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, mp_test_redis_url(), "x", &o));
  o.lease_ms = 0;
  o.connect_timeout_ms = -1;
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, mp_test_redis_url(), "x", &o));
  o.connect_timeout_ms = 0;
  o.consumer = "has space";
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, mp_test_redis_url(), "x", &o));
  assert_mp(MP_EINVAL, mp_redis_queue_delete(mp_test_redis_url(), "", 1000));
  assert_mp(MP_EINVAL, mp_redis_queue_delete("nope://", "x", 1000));
}

/* Where hiredis_ssl is missing (the Windows build) rediss:// is refused up front. */
static void tls_is_refused_where_unsupported(void **state) {
  (void)state;
#ifdef _WIN32
  mp_queue *q;
  assert_mp(MP_ENOTSUP, mp_redis_queue_create(&q, "rediss://127.0.0.1:6379/0", "x", NULL));
  assert_non_null(strstr(mp_last_error(), "TLS"));
#else
  skip(); /* Linux has TLS: test_redis_fault checks it against a TLS redis-server */
#endif
}

/* ---- values and messages ------------------------------------------------------------ */

static mp_value *every_type(void) {
  mp_value *d = mp_value_dict();
  mp_value *l = mp_value_list();
  mp_value_append(l, mp_value_nil());
  mp_value_append(l, mp_value_bool(1));
  mp_value_append(l, mp_value_bool(0));
  mp_value_append(l, mp_value_int(INT64_MIN));
  mp_value_append(l, mp_value_int(INT64_MAX));
  mp_value_append(l, mp_value_double(-2.5e300));
  mp_value_append(l, mp_value_strn("nul\0inside \xc3\xa9", 14));
  mp_value_append(l, mp_value_bytes("\x00\xff\x80", 3));
  mp_value_append(l, mp_value_bytes(NULL, 0));
  mp_value *t = mp_value_tuple();
  mp_value_append(t, mp_value_int(1));
  mp_value_append(t, mp_value_str("two"));
  mp_value_append(l, t);
  mp_value_dict_set(d, mp_value_str("list"), l);
  mp_value_dict_set(d, mp_value_int(7), mp_value_dict());
  return d;
}

static void every_value_type_round_trips(void **state) {
  (void)state;
  const char *name = fresh("values");
  mp_queue *q = open_q(name, 0);
  mp_value *vals[] = {mp_value_nil(),         mp_value_bool(1), mp_value_int(-42),
                      mp_value_double(0.125), mp_value_str(""), mp_value_bytes("b\0y", 3),
                      mp_value_list(),        mp_value_tuple(), every_type()};
  size_t n = sizeof vals / sizeof *vals;
  for (size_t i = 0; i < n; i++)
    assert_mp_ok(mp_queue_put_value(q, vals[i], 0));
  for (size_t i = 0; i < n; i++) {
    mp_value *got;
    assert_mp_ok(mp_queue_get_value(q, &got, 5000));
    assert_true(mp_value_equal(got, vals[i]));
    mp_value_free(got);
    mp_value_free(vals[i]);
  }
  /* Bytes: empty, binary, and 1 MiB. */
  assert_mp_ok(mp_queue_put(q, NULL, 0, 0));
  mp_test_get_str(q, "", 5000);
  size_t big = 1024 * 1024;
  unsigned char *b = malloc(big);
  assert_non_null(b);
  size_t len = mp_test_make_msg(b, 3, 9, big - sizeof(struct mp_test_msg_hdr));
  assert_mp_ok(mp_queue_put(q, b, len, 0));
  void *got;
  size_t got_len;
  struct mp_test_msg_hdr h;
  assert_mp_ok(mp_queue_get(q, &got, &got_len, 5000));
  assert_int_equal(mp_test_check_msg(got, got_len, &h), 0);
  assert_int_equal(h.seq, 9);
  mp_free(got);
  free(b);
  /* Bytes that are not MessagePack: get_value says so; the queue goes on. */
  put_str(q, "\xc1 never a value");
  mp_value *v;
  assert_mp(MP_EPROTO, mp_queue_get_value(q, &v, 5000));
  put_str(q, "after");
  mp_test_get_str(q, "after", 5000);
  mp_queue_free(q);
}

/* ---- a plain queue ------------------------------------------------------------------ */

typedef struct blocked_get {
  mp_queue *q;
  int rc;
  char got[32];
} blocked_get;

static void get_forever(void *arg) {
  blocked_get *b = arg;
  void *buf;
  size_t len;
  b->rc = mp_queue_get(b->q, &buf, &len, MP_FOREVER);
  if (b->rc == 0) {
    snprintf(b->got, sizeof b->got, "%.*s", (int)len, (char *)buf);
    mp_free(buf);
  }
}

static void plain_queue_is_a_fifo_with_timeouts_and_close(void **state) {
  (void)state;
  const char *name = fresh("plain");
  mp_queue *a = open_q(name, 0), *b = open_q(name, 0);
  assert_int_equal(mp_queue_empty(a), 1);
  assert_int_equal(mp_queue_full(a), 0);
  put_str(a, "one");
  put_str(a, "two");
  put_str(b, "three");
  size_t n;
  assert_mp_ok(mp_queue_qsize(b, &n));
  assert_int_equal(n, 3);
  mp_test_get_str(b, "one", 0);
  mp_test_get_str(a, "two", 0);
  mp_test_get_str(b, "three", 0);
  assert_mp_ok(mp_queue_qsize(a, &n));
  assert_int_equal(n, 0);
  /* An empty get waits in Redis for its timeout, then MP_EEMPTY. */
  uint64_t t0 = mp_monotonic_ns();
  void *buf;
  size_t len;
  assert_mp(MP_EEMPTY, mp_queue_get(a, &buf, &len, 300));
  uint64_t waited = (mp_monotonic_ns() - t0) / 1000000;
  assert_true(waited >= 250);
  assert_mp(MP_EEMPTY, mp_queue_get(a, &buf, &len, 0));
  assert_mp(MP_ENOTSUP, mp_queue_task_done(a));
  assert_mp(MP_ENOTSUP, mp_queue_join(a, 0));
  assert_mp_ok(mp_queue_flush(a, 1000));
  /* A handle is this process's: a child opens its own from the URL and name. */
  mp_args *args;
  assert_mp_ok(mp_args_create(&args));
  assert_mp(MP_ENOTSUP, mp_args_add_queue(args, a));
  mp_args_free(args);
  /* A get blocked in Redis is woken by a put through another handle... */
  blocked_get bg = {a, 1, ""};
  mp_test_thread *t = mp_test_thread_start(get_forever, &bg);
  put_str(b, "wake");
  mp_test_thread_join(t);
  assert_mp_ok(bg.rc);
  assert_string_equal(bg.got, "wake");
  /* ... and by close: getters drain what is queued, then MP_EEOF; puts MP_ECLOSED. */
  bg.rc = 1;
  t = mp_test_thread_start(get_forever, &bg);
  mp_queue *c = open_q(name, 0);
  blocked_get bg2 = {c, 1, ""};
  mp_test_thread *t2 = mp_test_thread_start(get_forever, &bg2);
  mp_queue *closer = open_q(name, 0);
  assert_mp_ok(mp_queue_close(closer));
  mp_test_thread_join(t);
  mp_test_thread_join(t2);
  assert_mp(MP_EEOF, bg.rc);
  assert_mp(MP_EEOF, bg2.rc);
  assert_mp(MP_ECLOSED, mp_queue_put(b, "late", 4, 0));
  assert_non_null(strstr(mp_last_error(), "closed"));
  assert_mp(MP_EEOF, mp_queue_get(b, &buf, &len, 1000));
  assert_mp(MP_EEOF, mp_queue_get(closer, &buf, &len, 0));
  mp_queue_free(a);
  mp_queue_free(b);
  mp_queue_free(c);
  mp_queue_free(closer);
  /* A closed queue stays closed for new handles; deleting it starts afresh. */
  a = open_q(name, 0);
  assert_mp(MP_ECLOSED, mp_queue_put(a, "x", 1, 0));
  mp_queue_free(a);
  fresh("plain");
  a = open_q(name, 0);
  put_str(a, "again");
  mp_test_get_str(a, "again", 1000);
  mp_queue_free(a);
}

/* ---- a joinable queue --------------------------------------------------------------- */

typedef struct joiner {
  mp_queue *q;
  int rc;
} joiner;

static void join_forever(void *arg) {
  joiner *j = arg;
  j->rc = mp_queue_join(j->q, MP_FOREVER);
}

static void joinable_queue_counts_tasks_and_join_waits_in_redis(void **state) {
  (void)state;
  const char *name = fresh("joinable");
  mp_queue *p = open_q(name, 1), *c = open_q(name, 1);
  assert_mp_ok(mp_queue_join(p, 0)); /* nothing put yet */
  assert_mp(MP_EINVAL, mp_queue_task_done(c));
  put_str(p, "a");
  put_str(p, "b");
  assert_mp(MP_ETIMEDOUT, mp_queue_join(p, 200));
  joiner j = {p, 1};
  mp_test_thread *t = mp_test_thread_start(join_forever, &j);
  mp_test_get_str(c, "a", 1000);
  mp_test_get_str(c, "b", 1000);
  size_t n;
  assert_mp_ok(mp_queue_qsize(p, &n));
  assert_int_equal(n, 0);
  assert_mp_ok(mp_queue_task_done(c));
  assert_mp(MP_ETIMEDOUT, mp_queue_join(c, 100)); /* "b" is not done yet */
  assert_mp_ok(mp_queue_task_done(c));
  mp_test_thread_join(t); /* woken by the last task_done, not by a timer */
  assert_mp_ok(j.rc);
  assert_mp(MP_EINVAL, mp_queue_task_done(c));
  assert_mp_ok(mp_queue_join(p, 0));
  /* One kind per queue. */
  mp_queue *q;
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, mp_test_redis_url(), name, NULL));
  assert_non_null(strstr(mp_last_error(), "joinable"));
  mp_queue_free(p);
  mp_queue_free(c);
}

/* A handle freed with messages it got and never marked done gives them back at once. */
static void freed_handle_gives_back_what_it_holds(void **state) {
  (void)state;
  const char *name = fresh("giveback");
  mp_redis_opts o = {0};
  o.joinable = 1;
  o.lease_ms = 600000; /* only a release at free can make this prompt */
  o.prefetch = 3;
  mp_queue *p, *c1, *c2;
  assert_mp_ok(mp_redis_queue_create(&p, mp_test_redis_url(), name, &o));
  assert_mp_ok(mp_redis_queue_create(&c1, mp_test_redis_url(), name, &o));
  for (int i = 0; i < 5; i++) {
    char m[8];
    snprintf(m, sizeof m, "m%d", i);
    put_str(p, m);
  }
  mp_test_get_str(c1, "m0", 1000); /* takes m0..m2, hands out m0 */
  mp_queue_free(c1);
  o.lease_ms = 1000; /* c2 reclaims what has been idle for a second: c1's, at once */
  assert_mp_ok(mp_redis_queue_create(&c2, mp_test_redis_url(), name, &o));
  int seen[5] = {0};
  for (int i = 0; i < 5; i++) {
    void *buf;
    size_t len;
    assert_mp_ok(mp_queue_get(c2, &buf, &len, 5000));
    assert_int_equal(len, 2);
    seen[((char *)buf)[1] - '0']++;
    mp_free(buf);
    assert_mp_ok(mp_queue_task_done(c2));
  }
  for (int i = 0; i < 5; i++)
    assert_int_equal(seen[i], 1);
  assert_mp_ok(mp_queue_join(p, 1000));
  mp_queue_free(c2);
  mp_queue_free(p);
  /* A plain handle's prefetched messages are put back (at the end of the queue). */
  name = fresh("giveback-plain");
  o.joinable = 0;
  assert_mp_ok(mp_redis_queue_create(&p, mp_test_redis_url(), name, &o));
  assert_mp_ok(mp_redis_queue_create(&c1, mp_test_redis_url(), name, &o));
  put_str(p, "x");
  put_str(p, "y");
  put_str(p, "z");
  mp_test_get_str(c1, "x", 1000);
  mp_queue_free(c1);
  mp_test_get_str(p, "y", 1000);
  mp_test_get_str(p, "z", 1000);
  mp_queue_free(p);
}

/* ---- authentication and reachability ---------------------------------------------- */

static void auth_and_acl_errors_are_clear(void **state) {
  (void)state;
  char u[512];
  const char *name = fresh("auth");
  mp_queue *q;
  assert_mp_ok(mp_redis_queue_create(&q, url_as("alice:alice-pw", u, sizeof u), name, NULL));
  put_str(q, "hi");
  mp_test_get_str(q, "hi", 1000);
  mp_queue_free(q);
  /* The password never shows in a message. */
  static const char *refused[] = {"alice:wrong-Secret-77", "nobody:wrong-Secret-77",
                                  ":wrong-Secret-77"};
  for (size_t i = 0; i < 3; i++) {
    assert_mp(MP_EAUTH, mp_redis_queue_create(&q, url_as(refused[i], u, sizeof u), name, NULL));
    assert_null(strstr(mp_last_error(), "Secret-77"));
    assert_non_null(strstr(mp_last_error(), "AUTH"));
  }
  /* A user whose ACL does not cover the queue's keys. */
  assert_mp(MP_EPERM,
            mp_redis_queue_create(&q, url_as("outsider:outsider-pw", u, sizeof u), name, NULL));
  assert_null(strstr(mp_last_error(), "outsider-pw"));
}

static void unreachable_redis_fails_within_the_timeout(void **state) {
  (void)state;
  mp_redis_opts o = {0};
  o.connect_timeout_ms = 500;
  mp_queue *q;
  /* Port 1 on loopback: nothing listens there. */
  uint64_t t0 = mp_monotonic_ns();
  assert_mp(MP_EBROKEN, mp_redis_queue_create(&q, "redis://127.0.0.1:1/0", "x", &o));
  assert_true((mp_monotonic_ns() - t0) / 1000000 < 5000);
  assert_non_null(strstr(mp_last_error(), "127.0.0.1:1"));
  assert_mp(MP_EBROKEN, mp_redis_queue_delete("redis://127.0.0.1:1/0", "x", 300));
}

/* ---- throughput settings and threads ----------------------------------------------- */

static void pipelined_puts_and_prefetched_gets_keep_order(void **state) {
  (void)state;
  const char *name = fresh("pipeline");
  mp_redis_opts o = {0};
  o.pipeline = 64;
  o.prefetch = 32;
  mp_queue *p, *c;
  assert_mp_ok(mp_redis_queue_create(&p, mp_test_redis_url(), name, &o));
  assert_mp_ok(mp_redis_queue_create(&c, mp_test_redis_url(), name, &o));
  unsigned char buf[sizeof(struct mp_test_msg_hdr) + 200];
  enum { N = 2000 };
  for (uint32_t i = 0; i < N; i++)
    assert_mp_ok(mp_queue_put(p, buf, mp_test_make_msg(buf, 1, i, mp_test_rand_len(1, i, 200)), 0));
  assert_mp_ok(mp_queue_flush(p, 5000));
  for (uint32_t i = 0; i < N; i++) {
    void *m;
    size_t len;
    struct mp_test_msg_hdr h;
    assert_mp_ok(mp_queue_get(c, &m, &len, 5000));
    assert_int_equal(mp_test_check_msg(m, len, &h), 0);
    assert_int_equal(h.seq, i);
    mp_free(m);
  }
  size_t n;
  assert_mp_ok(mp_queue_qsize(c, &n));
  assert_int_equal(n, 0);
  mp_queue_free(p);
  mp_queue_free(c);
}

/* ---- processes that share nothing but the URL ----------------------------------------- */

static void processes_share_a_queue_by_url(void **state) {
  (void)state;
#ifdef _WIN32
  enum { PRODUCERS = 2, CONSUMERS = 2, COUNT = 300 }; /* each spawn costs ~0.1 s under Wine */
#else
  enum { PRODUCERS = 3, CONSUMERS = 3, COUNT = 1000 };
#endif
  char name[64], results[80];
  snprintf(name, sizeof name, "%s", fresh("procs"));
  snprintf(results, sizeof results, "%s", fresh("procs-results"));
  snprintf(name_buf, sizeof name_buf, "%s", name);
  mp_process *c[CONSUMERS], *p[PRODUCERS];
  mp_queue *q = open_q(name, 1); /* make it joinable before anyone else opens it */
  for (int i = 0; i < CONSUMERS; i++)
    c[i] = mp_test_redis_consumer(mp_test_redis_url(), name, results, 0);
  for (int i = 0; i < PRODUCERS; i++)
    p[i] = mp_test_redis_producer(mp_test_redis_url(), name, i, COUNT);
  for (int i = 0; i < PRODUCERS; i++)
    mp_test_join_ok(p[i]);
  assert_mp_ok(mp_queue_join(q, 120000)); /* every message was reported and done */
  assert_mp_ok(mp_queue_close(q));
  for (int i = 0; i < CONSUMERS; i++)
    mp_test_join_ok(c[i]);
  mp_test_redis_check_results(mp_test_redis_url(), results, PRODUCERS, COUNT, NULL, 0);
  mp_queue_free(q);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bad_urls_names_and_options_are_refused),
      cmocka_unit_test(tls_is_refused_where_unsupported),
      cmocka_unit_test(every_value_type_round_trips),
      cmocka_unit_test(plain_queue_is_a_fifo_with_timeouts_and_close),
      cmocka_unit_test(joinable_queue_counts_tasks_and_join_waits_in_redis),
      cmocka_unit_test(freed_handle_gives_back_what_it_holds),
      cmocka_unit_test(auth_and_acl_errors_are_clear),
      cmocka_unit_test(unreachable_redis_fails_within_the_timeout),
      cmocka_unit_test(pipelined_puts_and_prefetched_gets_keep_order),
      cmocka_unit_test(processes_share_a_queue_by_url),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
