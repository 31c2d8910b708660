/* The local queue: FIFO order, many producers and consumers with verified messages,
 * maxsize and timeouts, close, JoinableQueue, bad input, threads, and processes killed
 * mid-put and mid-get after which the survivors go on. Runs under fork and spawn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#  include <signal.h>
#  include <sys/types.h>
#endif

#include "xfer.h"
#include "platform.h"
#include "testutil.h"

/* ---- child targets ----------------------------------------------------------------- */

/* args: queue, producer id, count, max payload. Puts count verified messages. */
static int producer(mp_args *a) {
  mp_queue *q;
  int64_t id, count, max;
  if (mp_args_get_queue(a, 0, &q) || mp_args_get_int(a, 1, &id) || mp_args_get_int(a, 2, &count) ||
      mp_args_get_int(a, 3, &max))
    return 90;
  unsigned char *buf = malloc(sizeof(struct mp_test_msg_hdr) + (size_t)max);
  if (buf == NULL)
    return 91;
  for (uint32_t s = 0; s < (uint32_t)count; s++) {
    size_t n =
        mp_test_make_msg(buf, (uint32_t)id, s, mp_test_rand_len((uint32_t)id, s, (size_t)max));
    if (mp_queue_put(q, buf, n, MP_FOREVER) != 0) {
      free(buf);
      return 92;
    }
  }
  free(buf);
  return 0;
}

/* args: queue, shm seen[nprod * count], nprod, count. Gets until EOF; checks every message
 * and per-producer order; counts each (producer, seq) it sees. */
static int consumer(mp_args *a) {
  mp_queue *q;
  mp_shm *m;
  int64_t nprod, count;
  void *seen_v;
  size_t seen_len;
  if (mp_args_get_queue(a, 0, &q) || mp_args_get_shm(a, 1, &m) || mp_args_get_int(a, 2, &nprod) ||
      mp_args_get_int(a, 3, &count) || mp_shm_map(m, &seen_v, &seen_len))
    return 90;
  unsigned char *seen = seen_v;
  int64_t last[16];
  for (int i = 0; i < 16; i++)
    last[i] = -1;
  for (;;) {
    void *buf = NULL;
    size_t n = 0;
    int rc = mp_queue_get(q, &buf, &n, MP_FOREVER);
    if (rc == MP_EEOF)
      return 0;
    if (rc != 0)
      return 93;
    struct mp_test_msg_hdr h;
    int bad = mp_test_check_msg(buf, n, &h);
    mp_free(buf);
    if (bad)
      return 94;
    if (h.producer >= nprod || h.seq >= count)
      return 95;
    if ((int64_t)h.seq <= last[h.producer])
      return 96; /* out of order for this producer */
    last[h.producer] = h.seq;
    __atomic_fetch_add(&seen[h.producer * count + h.seq], 1, __ATOMIC_RELAXED);
  }
}

/* args: queue. Blocks in get forever (the test kills it). */
static int blocked_getter(mp_args *a) {
  mp_queue *q;
  void *buf = NULL;
  size_t n;
  if (mp_args_get_queue(a, 0, &q))
    return 90;
  int rc = mp_queue_get(q, &buf, &n, MP_FOREVER);
  mp_free(buf);
  return rc == 0 ? 0 : 93;
}

/* args: queue, size. Puts one message of size bytes, then exits. */
static int big_putter(mp_args *a) {
  mp_queue *q;
  int64_t size;
  if (mp_args_get_queue(a, 0, &q) || mp_args_get_int(a, 1, &size))
    return 90;
  unsigned char *buf = malloc((size_t)size);
  if (buf == NULL)
    return 91;
  size_t n = mp_test_make_msg(buf, 0, 0, (size_t)size - sizeof(struct mp_test_msg_hdr));
  int rc = mp_queue_put(q, buf, n, MP_FOREVER);
  free(buf);
  return rc == 0 ? 0 : 92;
}

/* args: queue. Gets messages, marking each done, until EOF. */
static int task_worker(mp_args *a) {
  mp_queue *q;
  if (mp_args_get_queue(a, 0, &q))
    return 90;
  for (;;) {
    void *buf = NULL;
    size_t n;
    int rc = mp_queue_get(q, &buf, &n, MP_FOREVER);
    mp_free(buf);
    if (rc == MP_EEOF)
      return 0;
    if (rc != 0 || mp_queue_task_done(q) != 0)
      return 93;
  }
}

/* ---- helpers ------------------------------------------------------------------------ */

static mp_process *start(mp_target_fn fn, mp_args *a) {
  mp_process *p = NULL;
  assert_mp_ok(mp_process_create(&p, fn, a, NULL));
  assert_mp_ok(mp_process_start(p));
  return p;
}

static mp_process *start_producer(mp_queue *q, int id, int count, int max) {
  mp_args *a;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_queue(a, q));
  assert_mp_ok(mp_args_add_int(a, id));
  assert_mp_ok(mp_args_add_int(a, count));
  assert_mp_ok(mp_args_add_int(a, max));
  mp_process *p = start(producer, a);
  mp_args_free(a);
  return p;
}

static mp_process *start_with_queue(mp_target_fn fn, mp_queue *q, int64_t extra) {
  mp_args *a;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_queue(a, q));
  assert_mp_ok(mp_args_add_int(a, extra));
  mp_process *p = start(fn, a);
  mp_args_free(a);
  return p;
}

static void join_ok(mp_process *p) {
  int code = -1;
  assert_mp_ok(mp_process_join(p, 120000));
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
}

/* Gets one message and checks it is intact and the expected one. */
static void get_expect(mp_queue *q, uint32_t producer_id, uint32_t seq, int timeout_ms) {
  void *buf = NULL;
  size_t n = 0;
  struct mp_test_msg_hdr h;
  assert_mp_ok(mp_queue_get(q, &buf, &n, timeout_ms));
  assert_int_equal(mp_test_check_msg(buf, n, &h), 0);
  assert_int_equal(h.producer, producer_id);
  assert_int_equal(h.seq, seq);
  mp_free(buf);
}

static int64_t ms_since(uint64_t t0) { return (int64_t)((mp_monotonic_ns() - t0) / 1000000); }

/* ---- tests -------------------------------------------------------------------------- */

/* One producer process, a ring small enough to wrap many times, sizes crossing the
 * single-record limit: the consumer sees every message intact and in order. */
static void one_producer_is_fifo(void **state) {
  (void)state;
  mp_queue *q;
  mp_queue_opts o = {0, 0, 8192, 0};
  assert_mp_ok(mp_queue_create_ex(&q, &o));
  enum { N = 3000 };
  mp_process *p = start_producer(q, 0, N, 5000); /* chunk is 2032 bytes: many are split */
  for (uint32_t s = 0; s < N; s++)
    get_expect(q, 0, s, 30000);
  join_ok(p);
  assert_int_equal(mp_queue_empty(q), 1);
  mp_queue_free(q);
}

/* 4 producers x 4 consumers x 10,000 messages of 0..64 KiB each: none lost, none
 * duplicated, each intact, each producer's messages in order at every consumer. */
static void many_to_many_loses_nothing(void **state) {
  (void)state;
  enum { NP = 4, NC = 4, COUNT = 10000, MAXLEN = 64 * 1024 };
  mp_queue *q;
  mp_shm *m;
  void *seen;
  size_t seen_len;
  uint64_t t0 = mp_monotonic_ns();
  assert_mp_ok(mp_queue_create(&q, 0));
  assert_mp_ok(mp_shm_create(&m, NP * COUNT));
  assert_mp_ok(mp_shm_map(m, &seen, &seen_len));
  mp_process *cons[NC], *prods[NP];
  for (int i = 0; i < NC; i++) {
    mp_args *a;
    assert_mp_ok(mp_args_create(&a));
    assert_mp_ok(mp_args_add_queue(a, q));
    assert_mp_ok(mp_args_add_shm(a, m));
    assert_mp_ok(mp_args_add_int(a, NP));
    assert_mp_ok(mp_args_add_int(a, COUNT));
    cons[i] = start(consumer, a);
    mp_args_free(a);
  }
  for (int i = 0; i < NP; i++)
    prods[i] = start_producer(q, i, COUNT, MAXLEN);
  for (int i = 0; i < NP; i++)
    join_ok(prods[i]);
  assert_mp_ok(mp_queue_close(q));
  for (int i = 0; i < NC; i++)
    join_ok(cons[i]);
  for (size_t i = 0; i < NP * COUNT; i++)
    if (((unsigned char *)seen)[i] != 1)
      fail_msg("message %d/%d seen %d times", (int)(i / COUNT), (int)(i % COUNT),
               ((unsigned char *)seen)[i]);
  printf("# 4x4x%d messages of 0..64 KiB in %lld ms\n", COUNT, (long long)ms_since(t0));
  mp_shm_free(m);
  mp_queue_free(q);
}

/* Zero-length messages are legal; bad arguments are refused and change nothing. */
static void bad_input_is_refused(void **state) {
  (void)state;
  mp_queue *q;
  void *buf = NULL;
  size_t n = 99;
  mp_queue_opts big = {0, 0, ((size_t)1 << 30) + 1, 0}, small = {0, 100, 0, 0};
  assert_mp(MP_EINVAL, mp_queue_create(NULL, 0));
  assert_mp(MP_EINVAL, mp_queue_create_ex(&q, &big));
  assert_mp_ok(mp_queue_create_ex(&q, &small));
  assert_mp(MP_EINVAL, mp_queue_put(q, NULL, 1, 0));
  assert_mp(MP_EINVAL, mp_queue_put(NULL, "x", 1, 0));
  char msg[101] = {0};
  assert_mp(MP_EINVAL, mp_queue_put(q, msg, 101, 0));
  assert_non_null(strstr(mp_last_error(), "maximum"));
  assert_int_equal(mp_queue_empty(q), 1);
  assert_mp_ok(mp_queue_put(q, msg, 100, 0));
  assert_mp_ok(mp_queue_put(q, NULL, 0, 0));
  assert_mp(MP_EINVAL, mp_queue_get(q, NULL, &n, 0));
  assert_mp(MP_EINVAL, mp_queue_get(q, &buf, NULL, 0));
  assert_mp(MP_EINVAL, mp_queue_put(q, "x", 1, -5));
  assert_mp_ok(mp_queue_get(q, &buf, &n, 0));
  assert_int_equal(n, 100);
  mp_free(buf);
  assert_mp_ok(mp_queue_get(q, &buf, &n, 0));
  assert_int_equal(n, 0);
  mp_free(buf);
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &n, 0));
  assert_mp(MP_EINVAL, mp_queue_qsize(q, NULL));
  assert_mp(MP_EINVAL, mp_args_add_queue(NULL, q));
  mp_args *a;
  assert_mp_ok(mp_args_create(&a));
  assert_mp(MP_EINVAL, mp_args_add_queue(a, NULL));
  assert_mp_ok(mp_args_add_int(a, 1));
  mp_queue *got = NULL;
  assert_mp(MP_EINVAL, mp_args_get_queue(a, 0, &got));
  mp_args_free(a);
  mp_queue_free(q);
  mp_queue_free(NULL);
}

static void empty_get_and_full_put_time_out(void **state) {
  (void)state;
  mp_queue *q;
  void *buf = NULL;
  size_t n;
  assert_mp_ok(mp_queue_create(&q, 2));
  uint64_t t0 = mp_monotonic_ns();
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &n, 0));
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &n, 60));
  assert_true(ms_since(t0) >= 60);
  assert_mp_ok(mp_queue_put(q, "a", 1, 0));
  assert_int_equal(mp_queue_full(q), 0);
  assert_mp_ok(mp_queue_put(q, "b", 1, 0));
  assert_int_equal(mp_queue_full(q), 1);
  size_t size = 0;
  assert_mp_ok(mp_queue_qsize(q, &size));
  assert_int_equal(size, 2);
  assert_mp(MP_EFULL, mp_queue_put(q, "c", 1, 0));
  t0 = mp_monotonic_ns();
  assert_mp(MP_EFULL, mp_queue_put(q, "c", 1, 60));
  assert_true(ms_since(t0) >= 60);
  assert_non_null(strstr(mp_last_error(), "full"));
  assert_mp_ok(mp_queue_get(q, &buf, &n, 0));
  assert_memory_equal(buf, "a", 1);
  mp_free(buf);
  assert_mp_ok(mp_queue_put(q, "c", 1, 0));
  mp_queue_free(q);
}

/* A full queue blocks a put until a getter in another process makes room. */
static void maxsize_blocks_until_room(void **state) {
  (void)state;
  mp_queue *q;
  assert_mp_ok(mp_queue_create(&q, 1));
  unsigned char buf[64];
  assert_mp_ok(mp_queue_put(q, buf, mp_test_make_msg(buf, 7, 0, 8), 0));
  mp_process *p = start_producer(q, 0, 50, 16); /* blocks on the full queue */
  get_expect(q, 7, 0, 10000);
  for (uint32_t s = 0; s < 50; s++) {
    size_t size = 0;
    assert_mp_ok(mp_queue_qsize(q, &size));
    assert_true(size <= 1);
    get_expect(q, 0, s, 10000);
  }
  join_ok(p);
  mp_queue_free(q);
}

struct blocked_call {
  mp_queue *q;
  int rc;
};

static void get_forever(void *arg) {
  struct blocked_call *c = arg;
  void *buf = NULL;
  size_t n;
  c->rc = mp_queue_get(c->q, &buf, &n, MP_FOREVER);
  mp_free(buf);
}

static void put_forever(void *arg) {
  struct blocked_call *c = arg;
  c->rc = mp_queue_put(c->q, "z", 1, MP_FOREVER);
}

/* close: puts fail with a message, blocked putters are released with MP_ECLOSED, getters
 * drain what is there and then get MP_EEOF (a blocked getter too). */
static void close_drains_then_eof(void **state) {
  (void)state;
  mp_queue *q, *q2;
  void *buf = NULL;
  size_t n;
  assert_mp_ok(mp_queue_create(&q, 2));
  assert_mp_ok(mp_queue_put(q, "1", 1, 0));
  assert_mp_ok(mp_queue_put(q, "2", 1, 0));
  struct blocked_call putter = {q, 1};
  mp_thread *t;
  assert_mp_ok(mp_thread_create(&t, put_forever, &putter, NULL));
  assert_mp_ok(mp_queue_close(q));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(putter.rc, MP_ECLOSED);
  assert_mp(MP_ECLOSED, mp_queue_put(q, "3", 1, 0));
  assert_non_null(strstr(mp_last_error(), "closed"));
  assert_mp_ok(mp_queue_get(q, &buf, &n, 0));
  mp_free(buf);
  assert_mp_ok(mp_queue_get(q, &buf, &n, MP_FOREVER));
  assert_memory_equal(buf, "2", 1);
  mp_free(buf);
  assert_mp(MP_EEOF, mp_queue_get(q, &buf, &n, MP_FOREVER));
  assert_mp_ok(mp_queue_close(q));
  mp_queue_free(q);

  assert_mp_ok(mp_queue_create(&q2, 0));
  struct blocked_call getter = {q2, 1};
  assert_mp_ok(mp_thread_create(&t, get_forever, &getter, NULL));
  mp_sleep_ms(50); /* let it block; the result is the same if it has not yet */
  assert_mp_ok(mp_queue_close(q2));
  assert_mp_ok(mp_thread_join(t, MP_FOREVER));
  mp_thread_free(t);
  assert_int_equal(getter.rc, MP_EEOF);
  mp_queue_free(q2);
}

static void joinable_counts_tasks(void **state) {
  (void)state;
  mp_queue *q, *plain;
  assert_mp_ok(mp_queue_create(&plain, 0));
  assert_mp(MP_ENOTSUP, mp_queue_task_done(plain));
  assert_mp(MP_ENOTSUP, mp_queue_join(plain, 0));
  mp_queue_free(plain);

  assert_mp_ok(mp_joinable_queue_create(&q, 0));
  assert_mp_ok(mp_queue_join(q, 0));
  assert_mp(MP_EINVAL, mp_queue_task_done(q));
  for (int i = 0; i < 100; i++)
    assert_mp_ok(mp_queue_put(q, &i, sizeof i, 0));
  assert_mp(MP_ETIMEDOUT, mp_queue_join(q, 30));
  mp_process *w = start_with_queue(task_worker, q, 0);
  assert_mp_ok(mp_queue_join(q, 60000));
  assert_mp(MP_EINVAL, mp_queue_task_done(q));
  assert_mp_ok(mp_queue_close(q));
  join_ok(w);
  mp_queue_free(q);
}

static void typed_values_round_trip(void **state) {
  (void)state;
  mp_queue *q;
  assert_mp_ok(mp_queue_create(&q, 0));
  mp_value *v = mp_value_list();
  assert_mp_ok(mp_value_append(v, mp_value_int(42)));
  assert_mp_ok(mp_value_append(v, mp_value_str("queue")));
  assert_mp_ok(mp_queue_put_value(q, v, 0));
  assert_mp(MP_EINVAL, mp_queue_put_value(q, NULL, 0));
  assert_mp(MP_EINVAL, mp_queue_get_value(q, NULL, 0));
  mp_value *got = NULL;
  assert_mp_ok(mp_queue_get_value(q, &got, 0));
  assert_int_equal(mp_value_equal(v, got), 1);
  mp_value_free(v);
  mp_value_free(got);
  assert_mp_ok(mp_queue_put(q, "\xc1", 1, 0)); /* never valid MessagePack */
  assert_mp(MP_EPROTO, mp_queue_get_value(q, &got, 0));
  mp_queue_free(q);
}

struct thread_job {
  mp_queue *q;
  int id, count, bad;
};

static void thread_put(void *arg) {
  struct thread_job *j = arg;
  unsigned char buf[sizeof(struct mp_test_msg_hdr) + 3000];
  for (int s = 0; s < j->count; s++)
    if (mp_queue_put(j->q, buf,
                     mp_test_make_msg(buf, (uint32_t)j->id, (uint32_t)s,
                                      mp_test_rand_len((uint32_t)j->id, (uint32_t)s, 3000)),
                     MP_FOREVER) != 0)
      j->bad++;
}

static void thread_get(void *arg) {
  struct thread_job *j = arg;
  int last[4] = {-1, -1, -1, -1};
  for (;;) {
    void *buf = NULL;
    size_t n;
    struct mp_test_msg_hdr h;
    int rc = mp_queue_get(j->q, &buf, &n, MP_FOREVER);
    if (rc == MP_EEOF)
      return;
    if (rc != 0 || mp_test_check_msg(buf, n, &h) != 0 || h.producer >= 4 ||
        (int)h.seq <= last[h.producer])
      j->bad++;
    else
      last[h.producer] = (int)h.seq, j->count++;
    mp_free(buf);
  }
}

/* Several threads of one process share one queue handle. */
static void threads_share_a_queue(void **state) {
  (void)state;
  mp_queue *q;
  assert_mp_ok(mp_queue_create(&q, 16));
  struct thread_job put[4], get[4];
  mp_thread *tp[4], *tg[4];
  for (int i = 0; i < 4; i++) {
    get[i] = (struct thread_job){q, i, 0, 0};
    put[i] = (struct thread_job){q, i, 2000, 0};
    assert_mp_ok(mp_thread_create(&tg[i], thread_get, &get[i], NULL));
    assert_mp_ok(mp_thread_create(&tp[i], thread_put, &put[i], NULL));
  }
  for (int i = 0; i < 4; i++) {
    assert_mp_ok(mp_thread_join(tp[i], MP_FOREVER));
    mp_thread_free(tp[i]);
  }
  assert_mp_ok(mp_queue_close(q));
  int total = 0;
  for (int i = 0; i < 4; i++) {
    assert_mp_ok(mp_thread_join(tg[i], MP_FOREVER));
    mp_thread_free(tg[i]);
    assert_int_equal(get[i].bad + put[i].bad, 0);
    total += get[i].count;
  }
  assert_int_equal(total, 4 * 2000);
  mp_queue_free(q);
}

/* Waits (bounded) until pred holds; the states waited for are observable, not timed. */
static int wait_for(int (*pred)(mp_queue *), mp_queue *q) {
  for (int i = 0; i < 2000; i++) {
    if (pred(q))
      return 1;
    mp_sleep_ms(5);
  }
  return 0;
}

/* Another process holds the read lock: a polling get says so. */
static int getter_is_blocked(mp_queue *q) {
  void *buf = NULL;
  size_t n;
  int rc = mp_queue_get(q, &buf, &n, 0);
  mp_free(buf);
  return rc == MP_EEMPTY && strstr(mp_last_error(), "another getter") != NULL;
}

/* The first part of a large message is queued: its writer is mid-put. */
static int big_put_started(mp_queue *q) {
  size_t n = 0;
  return mp_queue_qsize(q, &n) == 0 && n == 1;
}

/* A consumer killed while blocked in get, then a producer killed in the middle of a
 * 4 MiB put: the survivors exchange 1,000 more messages, intact and in order, quickly,
 * and the torn message is never delivered. */
static void killed_peers_do_not_stop_the_others(void **state) {
  (void)state;
  mp_queue *q;
  assert_mp_ok(mp_queue_create(&q, 0));
  mp_process *c = start_with_queue(blocked_getter, q, 0);
  assert_true(wait_for(getter_is_blocked, q));
  assert_mp_ok(mp_process_kill(c));
  assert_mp_ok(mp_process_join(c, 10000));
  mp_process_free(c);

  mp_process *p = start_with_queue(big_putter, q, 4 * 1024 * 1024);
  assert_true(wait_for(big_put_started, q));
  assert_mp_ok(mp_process_kill(p));
  assert_mp_ok(mp_process_join(p, 10000));
  mp_process_free(p);

  uint64_t t0 = mp_monotonic_ns();
  p = start_producer(q, 3, 1000, 300000); /* some split into parts */
  for (uint32_t s = 0; s < 1000; s++)
    get_expect(q, 3, s, 20000);
  join_ok(p);
  void *buf = NULL;
  size_t n;
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &n, 0));
  printf("# survivors exchanged 1,000 messages in %lld ms\n", (long long)ms_since(t0));
  assert_true(ms_since(t0) < 60000);
  mp_queue_free(q);
}

/* A large put that times out part-way, with nobody getting: its parts are discarded by
 * the next getter, which then waits for (and gets) the next real message. */
static void abandoned_large_put_is_never_delivered(void **state) {
  (void)state;
  mp_queue *q;
  void *buf = NULL;
  size_t n = 0, size = 0;
  assert_mp_ok(mp_queue_create(&q, 0));
  size_t big = 4 * 1024 * 1024;
  unsigned char *data = calloc(1, big);
  assert_non_null(data);
  assert_mp(MP_EFULL, mp_queue_put(q, data, big, 100)); /* the ring holds 1 MiB */
  free(data);
  assert_mp_ok(mp_queue_qsize(q, &size));
  assert_int_equal(size, 1); /* its first part is queued */
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &n, 200));
  assert_int_equal(mp_queue_empty(q), 1);
  assert_mp_ok(mp_queue_put(q, "next", 4, 0));
  assert_mp_ok(mp_queue_get(q, &buf, &n, 0));
  assert_int_equal(n, 4);
  assert_memory_equal(buf, "next", 4);
  mp_free(buf);
  mp_queue_free(q);
}

/* Another process holds the write lock: a polling put says so. */
static int putter_is_blocked(mp_queue *q) {
  int rc = mp_queue_put(q, "x", 1, 0);
  return rc == MP_EFULL && strstr(mp_last_error(), "another putter") != NULL;
}

/* A JoinableQueue counts a message when its first record is published, in the same store:
 * a putter killed while it waits for room, or in the middle of a large message, leaves no
 * unfinished task behind (the abandoned message counts as done when a getter drops it). */
static void joinable_forgets_killed_putters(void **state) {
  (void)state;
  mp_queue *q;
  mp_queue_opts o = {1, 0, 0, 1};
  assert_mp_ok(mp_queue_create_ex(&q, &o));
  assert_mp_ok(mp_queue_put(q, "first", 5, 0));
  mp_process *p = start_with_queue(big_putter, q, 1000); /* finds the queue full */
  assert_true(wait_for(putter_is_blocked, q));
  assert_mp_ok(mp_process_kill(p));
  assert_mp_ok(mp_process_join(p, 10000));
  mp_process_free(p);
  void *buf = NULL;
  size_t n = 0;
  assert_mp_ok(mp_queue_get(q, &buf, &n, 0));
  mp_free(buf);
  assert_mp_ok(mp_queue_task_done(q));
  assert_mp_ok(mp_queue_join(q, 1000));
  mp_queue_free(q);

  o.maxsize = 0;
  assert_mp_ok(mp_queue_create_ex(&q, &o));
  p = start_with_queue(big_putter, q, 4 * 1024 * 1024); /* the ring holds 1 MiB */
  assert_true(wait_for(big_put_started, q));
  assert_mp_ok(mp_process_kill(p));
  assert_mp_ok(mp_process_join(p, 10000));
  mp_process_free(p);
  assert_mp(MP_ETIMEDOUT, mp_queue_join(q, 0)); /* its first part is still queued */
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &n, 200));
  assert_mp_ok(mp_queue_join(q, 1000));
  assert_mp(MP_EINVAL, mp_queue_task_done(q));
  mp_queue_free(q);
}

#ifndef _WIN32
/* A getter has taken everything queued (a message's first part included). */
static int ring_drained(mp_queue *q) {
  size_t n = 1;
  return mp_queue_qsize(q, &n) == 0 && n == 0;
}

/* POSIX: a consumer killed while it holds part of a large message. The writer is stopped
 * (SIGSTOP) so that the consumer provably waits mid-message; after the kill the writer
 * resumes, its remaining parts are skipped as orphans, and the next messages arrive. */
static void killed_reader_mid_message_loses_only_that_message(void **state) {
  (void)state;
  mp_queue *q;
  mp_queue_opts o = {0, 0, 65536, 0};
  assert_mp_ok(mp_queue_create_ex(&q, &o));
  mp_process *w = start_with_queue(big_putter, q, 1024 * 1024);
  assert_true(wait_for(big_put_started, q));
  assert_int_equal(kill((pid_t)mp_process_pid(w), SIGSTOP), 0);
  mp_process *r = start_with_queue(blocked_getter, q, 0);
  /* No polling get here: it would become the reader of the message. The first part
   * leaving the queue shows the child is mid-message, holding the read lock. */
  assert_true(wait_for(ring_drained, q));
  assert_mp_ok(mp_process_kill(r));
  assert_mp_ok(mp_process_join(r, 10000));
  mp_process_free(r);
  assert_int_equal(kill((pid_t)mp_process_pid(w), SIGCONT), 0);
  mp_process *p = start_producer(q, 1, 200, 50000);
  for (uint32_t s = 0; s < 200; s++)
    get_expect(q, 1, s, 20000); /* the writer's remaining parts are skipped meanwhile */
  join_ok(w);                   /* its put completed: that message went to the dead reader */
  join_ok(p);
  mp_queue_free(q);
}
#endif

/* The classic deadlock of Python's Queue (a child puts a large item, the parent joins it
 * before getting) cannot happen for a message that fits the ring: the put completes into
 * shared memory and the child exits. A larger message needs a getter, so the documented
 * pattern (get, then join) is what works; joining first only times out. */
static void join_before_get_pattern(void **state) {
  (void)state;
  mp_queue *q;
  assert_mp_ok(mp_queue_create(&q, 0));
  mp_process *p = start_with_queue(big_putter, q, 200 * 1024);
  join_ok(p); /* joined before anything was got */
  get_expect(q, 0, 0, 0);

  p = start_with_queue(big_putter, q, 8 * 1024 * 1024); /* 8 x the ring */
  assert_mp(MP_ETIMEDOUT, mp_process_join(p, 200));
  get_expect(q, 0, 0, 30000); /* get first ... */
  join_ok(p);                 /* ... then join */
  mp_queue_free(q);
}

/* A record header overwritten by a stray write (not a kill): get reports MP_EBROKEN
 * instead of delivering garbage, drops what was queued, and the queue works on. */
static void a_corrupt_ring_is_reported_not_delivered(void **state) {
  (void)state;
  mp_queue *q;
  mp__xfer x;
  assert_mp_ok(mp_queue_create(&q, 0));
  assert_mp_ok(mp_queue_put(q, "PAYLOAD-MARK", 12, 0));
  assert_mp_ok(mp__queue_xfer.export_obj(q, &x)); /* handles[0]: the segment */
  uint64_t size = 0;
  for (int i = 0; i < 8; i++)
    size |= (uint64_t)x.blob[i] << (8 * i);
  mp_plat_handle h;
  mp_plat_shm *m;
  assert_mp_ok(mp_plat_handle_dup(x.handles[0], &h));
  assert_mp_ok(mp_plat_shm_import(&m, h, (size_t)size));
  unsigned char *base = mp_plat_shm_addr(m), *hit = NULL;
  for (size_t i = 16; i + 12 <= size && !hit; i++)
    if (memcmp(base + i, "PAYLOAD-MARK", 12) == 0)
      hit = base + i;
  assert_non_null(hit);
  memset(hit - 16, 0xee, 16); /* the record's header */
  void *buf = NULL;
  size_t n = 0;
  assert_mp(MP_EBROKEN, mp_queue_get(q, &buf, &n, 0));
  assert_non_null(strstr(mp_last_error(), "corrupt"));
  assert_int_equal(mp_queue_empty(q), 1);
  assert_mp_ok(mp_queue_put(q, "ok", 2, 0));
  assert_mp_ok(mp_queue_get(q, &buf, &n, 0));
  assert_int_equal(n, 2);
  mp_free(buf);
  mp_plat_shm_free(m);
  mp_queue_free(q);
}

/* Queues created, passed to children and freed leave no handle behind. */
static void queues_leak_no_handles(void **state) {
  (void)state;
  int before = mp_test_open_handles();
  for (int i = 0; i < 20; i++) {
    mp_queue *q;
    assert_mp_ok(i % 2 ? mp_joinable_queue_create(&q, 0) : mp_queue_create(&q, 0));
    if (i < 4) {
      mp_process *p = start_producer(q, 0, 3, 10);
      for (uint32_t s = 0; s < 3; s++)
        get_expect(q, 0, s, 10000);
      join_ok(p);
    }
    mp_queue_free(q);
  }
  assert_int_equal(mp_test_open_handles(), before);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(one_producer_is_fifo),
      cmocka_unit_test(many_to_many_loses_nothing),
      cmocka_unit_test(bad_input_is_refused),
      cmocka_unit_test(empty_get_and_full_put_time_out),
      cmocka_unit_test(maxsize_blocks_until_room),
      cmocka_unit_test(close_drains_then_eof),
      cmocka_unit_test(joinable_counts_tasks),
      cmocka_unit_test(typed_values_round_trip),
      cmocka_unit_test(threads_share_a_queue),
      cmocka_unit_test(killed_peers_do_not_stop_the_others),
      cmocka_unit_test(abandoned_large_put_is_never_delivered),
      cmocka_unit_test(joinable_forgets_killed_putters),
#ifndef _WIN32
      cmocka_unit_test(killed_reader_mid_message_loses_only_that_message),
#endif
      cmocka_unit_test(join_before_get_pattern),
      cmocka_unit_test(a_corrupt_ring_is_reported_not_delivered),
      cmocka_unit_test(queues_leak_no_handles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
