/* The Redis queue when things go wrong (Linux: these tests start, kill and restart their
 * own redis-servers with tests/redis-fixture.sh): a consumer killed with messages it never
 * finished, redis-server killed and restarted mid-run with persistence on, Redis down and
 * back, TLS with a server certificate checked against a CA and the host name, and workers
 * in network namespaces of their own (as root) that reach Redis only over a veth link. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redisutil.h"
#include "testutil.h"

static char name_buf[3][64];

/* A queue name for this process, removed from the server at url first. */
static const char *fresh(const char *url, int slot, const char *what) {
  snprintf(name_buf[slot], sizeof name_buf[slot], "%s-%lld", what, (long long)mp_getpid());
  assert_mp_ok(mp_redis_queue_delete(url, name_buf[slot], 5000));
  return name_buf[slot];
}

/* redis-fixture.sh CMD on a private server directory (MP_REDIS_DIR-<suffix>). */
static void fixture(const char *cmd, const char *suffix) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s-%s", MP_REDIS_DIR, suffix);
  const char *argv[] = {"sh", MP_REDIS_FIXTURE, cmd, dir, NULL};
  mp_popen_opts o = {0};
  o.search_path = 1;
  int code = -1;
  assert_mp_ok(mp_call(argv, &o, &code));
  assert_int_equal(code, 0);
}

static const char *private_url(const char *suffix, char *buf, size_t size) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s-%s", MP_REDIS_DIR, suffix);
  return mp_test_redis_url_of(dir, buf, size);
}

static void put_msgs(mp_queue *q, uint32_t producer, uint32_t count) {
  unsigned char buf[sizeof(struct mp_test_msg_hdr) + 300];
  for (uint32_t s = 0; s < count; s++)
    assert_mp_ok(mp_queue_put(
        q, buf, mp_test_make_msg(buf, producer, s, mp_test_rand_len(producer, s, 300)), 0));
  assert_mp_ok(mp_queue_flush(q, 10000));
}

/* ---- a consumer killed holding unfinished messages ------------------------------------ */

/* args: url, name, signal queue, k. Gets k messages and never finishes them: says which on
 * the signal queue and waits to be killed. */
static int victim(mp_args *a) {
  const char *u, *name, *sig;
  int64_t k;
  if (mp_args_get_str(a, 0, &u, NULL) || mp_args_get_str(a, 1, &name, NULL) ||
      mp_args_get_str(a, 2, &sig, NULL) || mp_args_get_int(a, 3, &k))
    return 90;
  mp_redis_opts o = {0};
  o.joinable = 1;
  mp_queue *q, *s;
  if (mp_redis_queue_create(&q, u, name, &o) < 0 || mp_redis_queue_create(&s, u, sig, NULL) < 0)
    return 91;
  uint32_t held[64][2];
  for (int i = 0; i < k && i < 64; i++) {
    void *m;
    size_t len;
    struct mp_test_msg_hdr h;
    if (mp_queue_get(q, &m, &len, 60000) < 0 || mp_test_check_msg(m, len, &h) != 0)
      return 92;
    mp_free(m);
    held[i][0] = h.producer;
    held[i][1] = h.seq;
  }
  if (mp_queue_put(s, held, (size_t)k * sizeof held[0], MP_FOREVER) < 0)
    return 93;
  mp_event *never;
  if (mp_event_create(&never) < 0)
    return 94;
  mp_event_wait(never, MP_FOREVER); /* until kill -9 */
  return 95;
}

static void killed_consumer_messages_go_to_others(void **state) {
  (void)state;
  enum { COUNT = 300, HELD = 10, LEASE = 1500 };
  const char *url = mp_test_redis_url();
  const char *name = fresh(url, 0, "victim"), *results = fresh(url, 1, "victim-results");
  const char *sig = fresh(url, 2, "victim-signal");
  mp_redis_opts o = {0};
  o.joinable = 1;
  o.pipeline = 32;
  mp_queue *q, *s;
  assert_mp_ok(mp_redis_queue_create(&q, url, name, &o));
  assert_mp_ok(mp_redis_queue_create(&s, url, sig, NULL));
  put_msgs(q, 0, COUNT);
  mp_args *a;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_str(a, url));
  assert_mp_ok(mp_args_add_str(a, name));
  assert_mp_ok(mp_args_add_str(a, sig));
  assert_mp_ok(mp_args_add_int(a, HELD));
  mp_process_opts po = {0};
  po.method = MP_START_SPAWN;
  mp_process *v;
  assert_mp_ok(mp_process_create(&v, victim, a, &po));
  mp_args_free(a);
  assert_mp_ok(mp_process_start(v));
  void *held;
  size_t len;
  assert_mp_ok(mp_queue_get(s, &held, &len, 60000)); /* it holds HELD messages now */
  assert_int_equal(len, HELD * 2 * sizeof(uint32_t));
  mp_free(held);
  assert_mp_ok(mp_process_kill(v));
  assert_mp_ok(mp_process_join(v, 10000));
  mp_process_free(v);
  /* Two consumers that reclaim what has been silent for 1.5 s: the dead one's messages. */
  mp_process *c1 = mp_test_redis_consumer(url, name, results, LEASE);
  mp_process *c2 = mp_test_redis_consumer(url, name, results, LEASE);
  assert_mp_ok(mp_queue_join(q, 60000));
  assert_mp_ok(mp_queue_close(q));
  mp_test_join_ok(c1);
  mp_test_join_ok(c2);
  /* Every message reported exactly once: the victim's ten too, and none twice. */
  mp_test_redis_check_results(url, results, 1, COUNT, NULL, 0);
  mp_queue_free(q);
  mp_queue_free(s);
}

/* ---- redis-server killed and restarted mid-run ------------------------------------------ */

static void restart_server(void) { fixture("restart", "restart"); }

static void server_restart_mid_run_loses_and_repeats_nothing(void **state) {
  (void)state;
  enum { PRODUCERS = 2, COUNT = 1500 };
  char url[256];
  fixture("start", "restart");
  private_url("restart", url, sizeof url);
  const char *name = fresh(url, 0, "restart"), *results = fresh(url, 1, "restart-results");
  mp_redis_opts o = {0};
  o.joinable = 1;
  mp_queue *q;
  assert_mp_ok(mp_redis_queue_create(&q, url, name, &o));
  mp_process *c[2], *p[PRODUCERS];
  for (int i = 0; i < 2; i++)
    c[i] = mp_test_redis_consumer(url, name, results, 0);
  for (int i = 0; i < PRODUCERS; i++)
    p[i] = mp_test_redis_producer(url, name, i, COUNT);
  /* kill -9 and start again once a third of the results came in, while all run. */
  mp_test_redis_check_results(url, results, PRODUCERS, COUNT, restart_server,
                              PRODUCERS * COUNT / 3);
  for (int i = 0; i < PRODUCERS; i++)
    mp_test_join_ok(p[i]);
  assert_mp_ok(mp_queue_join(q, 60000));
  assert_mp_ok(mp_queue_close(q));
  for (int i = 0; i < 2; i++)
    mp_test_join_ok(c[i]);
  mp_queue_free(q);
  fixture("stop", "restart");
}

/* ---- Redis down, then back ----------------------------------------------------------- */

static void down_is_a_clear_error_and_back_carries_on(void **state) {
  (void)state;
  char url[256];
  fixture("start", "down");
  private_url("down", url, sizeof url);
  const char *name = fresh(url, 0, "down");
  mp_queue *q;
  assert_mp_ok(mp_redis_queue_create(&q, url, name, NULL));
  assert_mp_ok(mp_queue_put(q, "kept", 4, 0));
  assert_mp_ok(mp_queue_put(q, "later", 5, 0));
  void *m;
  size_t len;
  assert_mp_ok(mp_queue_get(q, &m, &len, 1000));
  mp_free(m);
  fixture("stop", "down");
  uint64_t t0 = mp_monotonic_ns();
  assert_mp(MP_EBROKEN, mp_queue_get(q, &m, &len, 800));
  uint64_t took = (mp_monotonic_ns() - t0) / 1000000;
  assert_true(took < 5000);
  assert_non_null(strstr(mp_last_error(), "127.0.0.1"));
  /* The handle has not noticed yet: the put goes out, its confirmation never comes, so the
   * handle keeps it and completes it once when Redis is back. */
  assert_mp(MP_EBROKEN, mp_queue_put(q, "resent", 6, 300));
  assert_non_null(strstr(mp_last_error(), "kept"));
  /* Now it knows it has no connection: a put is refused outright. */
  assert_mp(MP_EBROKEN, mp_queue_put(q, "refused", 7, 300));
  assert_non_null(strstr(mp_last_error(), "not queued"));
  size_t n;
  fixture("resume", "down");
  assert_mp_ok(mp_queue_qsize(q, &n)); /* the handle reconnects by itself */
  assert_int_equal(n, 2);
  assert_mp_ok(mp_queue_get(q, &m, &len, 5000)); /* what Redis had acknowledged survived */
  assert_int_equal(len, 5);
  assert_memory_equal(m, "later", 5);
  mp_free(m);
  assert_mp_ok(mp_queue_get(q, &m, &len, 5000));
  assert_int_equal(len, 6);
  assert_memory_equal(m, "resent", 6);
  mp_free(m);
  assert_mp(MP_EEMPTY, mp_queue_get(q, &m, &len, 0));
  mp_queue_free(q);
  fixture("stop", "down");
}

/* ---- TLS ----------------------------------------------------------------------------- */

static void tls_checks_the_server_certificate(void **state) {
  (void)state;
  char url[256], dir[1024], ca[1100], other[300];
  fixture("start-tls", "tls");
  private_url("tls", url, sizeof url);
  snprintf(dir, sizeof dir, "%s-tls", MP_REDIS_DIR);
  snprintf(ca, sizeof ca, "%s/ca.crt", dir);
  mp_redis_opts o = {0};
  o.tls_ca_file = ca;
  mp_queue *q;
  assert_mp_ok(mp_redis_queue_create(&q, url, "tls", &o));
  assert_mp_ok(mp_queue_put(q, "secret", 6, 0));
  void *m;
  size_t len;
  assert_mp_ok(mp_queue_get(q, &m, &len, 1000));
  assert_memory_equal(m, "secret", 6);
  mp_free(m);
  mp_queue_free(q);
  /* A CA that did not sign the server's certificate (the system's): refused. */
  o.tls_ca_file = NULL;
  assert_mp(MP_EAUTH, mp_redis_queue_create(&q, url, "tls", &o));
  assert_non_null(strstr(mp_last_error(), "TLS"));
  /* The right CA, but a host name the certificate does not name. */
  o.tls_ca_file = ca;
  snprintf(other, sizeof other, "rediss://localhost:%s", strrchr(url, ':') + 1);
  assert_mp(MP_EAUTH, mp_redis_queue_create(&q, other, "tls", &o));
  o.tls_ca_file = "/nonexistent/ca.pem";
  assert_mp(MP_EINVAL, mp_redis_queue_create(&q, url, "tls", &o));
  fixture("stop", "tls");
}

/* ---- workers in other network namespaces --------------------------------------------- */

/* As root: tests/redis-netns.sh makes two namespaces, each linked to this one by a veth
 * pair only, and a private redis-server on the host side; one consumer runs in each (this
 * program with --consumer) and sees nothing of this host but Redis' link address. */
static int netns(const char *cmd, const char *dir, const char *tag) {
  const char *argv[] = {"sh", MP_REDIS_NETNS, cmd, dir, tag, NULL};
  mp_popen_opts o = {0};
  o.search_path = 1;
  int code = -1;
  assert_mp_ok(mp_call(argv, &o, &code));
  return code;
}

static void workers_in_other_network_namespaces(void **state) {
  (void)state;
  if (geteuid() != 0) {
    print_message("skipped: network namespaces need root (ip netns, veth)\n");
    skip();
  }
  char exe[1024], dir[1024], tag[32], url[256];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  assert_true(n > 0);
  exe[n] = '\0';
  snprintf(dir, sizeof dir, "%s-netns", MP_REDIS_DIR);
  snprintf(tag, sizeof tag, "mpq%lld", (long long)mp_getpid());
  int code = netns("up", dir, tag);
  if (code == 77) {
    print_message("skipped: this machine cannot make network namespaces\n");
    skip();
  }
  assert_int_equal(code, 0);
  mp_test_redis_url_of(dir, url, sizeof url);
  const char *port = strrchr(url, ':') + 1; /* "PORT/0" */
  const char *name = fresh(url, 0, "netns"), *results = fresh(url, 1, "netns-results");
  mp_redis_opts o = {0};
  o.joinable = 1;
  o.pipeline = 32;
  mp_queue *q;
  assert_mp_ok(mp_redis_queue_create(&q, url, name, &o));
  mp_popen *w[2];
  for (int i = 0; i < 2; i++) {
    char ns[48], link_url[128];
    snprintf(ns, sizeof ns, "%s-%d", tag, i + 1);
    snprintf(link_url, sizeof link_url, "redis://169.254.213.%d:%s", i * 4 + 1, port);
    const char *argv[] = {"ip",         "netns",  "exec", ns,      exe,
                          "--consumer", link_url, name,   results, NULL};
    mp_popen_opts po = {0};
    po.search_path = 1;
    assert_mp_ok(mp_popen_create(&w[i], argv, &po));
  }
  put_msgs(q, 0, 200);
  put_msgs(q, 1, 200);
  assert_mp_ok(mp_queue_join(q, 60000));
  assert_mp_ok(mp_queue_close(q));
  for (int i = 0; i < 2; i++) {
    assert_mp_ok(mp_popen_wait(w[i], 60000));
    assert_mp_ok(mp_popen_returncode(w[i], &code));
    assert_int_equal(code, 0);
    mp_popen_free(w[i]);
  }
  mp_test_redis_check_results(url, results, 2, 200, NULL, 0);
  mp_queue_free(q);
  assert_int_equal(netns("down", dir, tag), 0);
}

/* The consumer run inside a namespace: --consumer URL NAME RESULTS. */
static int consumer_main(const char *url, const char *name, const char *results) {
  mp_process *p = mp_test_redis_consumer(url, name, results, 0);
  int code = -1;
  if (mp_process_join(p, 120000) < 0 || mp_process_exitcode(p, &code) < 0)
    return 1;
  mp_process_free(p);
  return code;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  signal(SIGPIPE, SIG_DFL); /* a write to a lost Redis must never raise it (net.c) */
  if (argc == 5 && strcmp(argv[1], "--consumer") == 0)
    return consumer_main(argv[2], argv[3], argv[4]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(killed_consumer_messages_go_to_others),
      cmocka_unit_test(server_restart_mid_run_loses_and_repeats_nothing),
      cmocka_unit_test(down_is_a_clear_error_and_back_carries_on),
      cmocka_unit_test(tls_checks_the_server_certificate),
      cmocka_unit_test(workers_in_other_network_namespaces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
