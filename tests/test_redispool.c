/* The distributed pool (mp_redis_pool_create, mp_worker_serve) against the fixture's
 * redis-server: workers are processes of their own that share nothing with the caller but
 * the URL and the pool's name. map, starmap, apply_async with callbacks and imap_unordered;
 * a worker killed mid-task (its task runs elsewhere, every result comes once); a task whose
 * runs are used up (MP_EWORKER naming the worker); a worker of another build (refused);
 * Redis down (a clear error in time); workers leaving and joining while a map runs; a
 * redis-server restarted mid-map (Linux: a private one, tests/redis-fixture.sh). The
 * faults are synchronised through Redis queues, never through sleeps. Linux and Wine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#  include <signal.h>
#endif

#include "redisutil.h"
#include "testutil.h"

static char pool_name[96];
static int serial;

/* A pool name of this process and test (the fixture's server is shared). */
static const char *fresh(const char *test) {
  snprintf(pool_name, sizeof pool_name, "%s-%lld-%d", test, (long long)mp_getpid(), ++serial);
  return pool_name;
}

/* ---- workers: separate processes, given the URL, the pool's name and their options ---- */

/* args: url, pool name, worker name ("" for a generated one), batch, max_tasks. */
static int worker_main(mp_args *a) {
  const char *url, *name, *wname;
  int64_t batch, max_tasks;
  if (mp_args_get_str(a, 0, &url, NULL) || mp_args_get_str(a, 1, &name, NULL) ||
      mp_args_get_str(a, 2, &wname, NULL) || mp_args_get_int(a, 3, &batch) ||
      mp_args_get_int(a, 4, &max_tasks))
    return 90;
  mp_worker_opts o = {0};
  o.worker = wname[0] ? wname : NULL;
  o.batch = (size_t)batch;
  o.max_tasks = (uint64_t)max_tasks;
  if (mp_worker_serve(url, name, &o) < 0) {
    fprintf(stderr, "worker: %s\n", mp_last_error());
    return 91;
  }
  return 0;
}

static mp_process *start_worker_at(const char *url, const char *name, const char *wname, int batch,
                                   int max_tasks) {
  mp_args *a = NULL;
  mp_process *p = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_str(a, url));
  assert_mp_ok(mp_args_add_str(a, name));
  assert_mp_ok(mp_args_add_str(a, wname));
  assert_mp_ok(mp_args_add_int(a, batch));
  assert_mp_ok(mp_args_add_int(a, max_tasks));
  assert_mp_ok(mp_process_create(&p, worker_main, a, NULL));
  assert_mp_ok(mp_process_start(p));
  mp_args_free(a);
  return p;
}

static mp_process *start_worker(const char *name, const char *wname, int batch, int max_tasks) {
  return start_worker_at(mp_test_redis_url(), name, wname, batch, max_tasks);
}

static void stop_worker(mp_process *p) {
  mp_process_kill(p);
  assert_mp_ok(mp_process_join(p, 60000));
  mp_process_free(p);
}

/* Closes, joins and frees the pool (its work done). */
static void close_pool(mp_pool *pool) {
  assert_mp_ok(mp_pool_close(pool));
  assert_mp_ok(mp_pool_join(pool, 60000));
  mp_pool_free(pool);
}

static mp_pool *open_pool_at(const char *url, const char *name, int attempts, int lease_ms) {
  mp_redis_pool_opts o = {0};
  o.workers = 2;
  o.attempts = attempts;
  o.lease_ms = lease_ms;
  mp_pool *pool = NULL;
  assert_mp_ok(mp_redis_pool_create(&pool, url, name, &o));
  return pool;
}

static mp_pool *open_pool(const char *name, int attempts, int lease_ms) {
  return open_pool_at(mp_test_redis_url(), name, attempts, lease_ms);
}

/* ---- tasks (they run in the workers) --------------------------------------------------- */

static int square(const mp_value *in, mp_value **out) {
  int64_t i = 0;
  if (mp_value_get_int(in, &i) < 0)
    return 1;
  if (i == -1)
    return mp_set_error(MP_EINVAL, "minus one is refused"), 1;
  *out = mp_value_int(i * i);
  return 0;
}

static int add(mp_value *const *args, size_t n, mp_value **out) {
  int64_t a = 0, b = 0;
  if (n != 2 || mp_value_get_int(args[0], &a) < 0 || mp_value_get_int(args[1], &b) < 0)
    return 1;
  *out = mp_value_int(a + b);
  return 0;
}

/* [i, pid of the worker that ran it] */
static int whoami(const mp_value *in, mp_value **out) {
  int64_t i = 0;
  mp_value_get_int(in, &i);
  *out = mp_value_list();
  mp_value_append(*out, mp_value_int(i));
  mp_value_append(*out, mp_value_int(mp_getpid()));
  return 0;
}

/* Opens the plain Redis queue `base``suffix`. */
static mp_queue *open_q(const char *url, const char *base, const char *suffix) {
  char name[160];
  snprintf(name, sizeof name, "%s%s", base, suffix);
  mp_queue *q = NULL;
  return mp_redis_queue_create(&q, url, name, NULL) < 0 ? NULL : q;
}

/* input [i, url, gate]: a run that takes the token of queue `gate` says so on gate-started
 * (with its pid), waits (in Redis) for a token on gate-release, says gate-finished and
 * returns 2 * i like every other run. */
static int gated(const mp_value *in, mp_value **out) {
  mp_value *vi, *vu, *vg;
  int64_t i = 0;
  const char *url, *gate;
  if (mp_value_at(in, 0, &vi) || mp_value_at(in, 1, &vu) || mp_value_at(in, 2, &vg) ||
      mp_value_get_int(vi, &i) || mp_value_get_str(vu, &url, NULL) ||
      mp_value_get_str(vg, &gate, NULL))
    return 1;
  if (url[0]) {
    mp_queue *g = open_q(url, gate, ""), *s = open_q(url, gate, "-started");
    mp_queue *r = open_q(url, gate, "-release"), *f = open_q(url, gate, "-finished");
    void *tok = NULL;
    size_t len = 0;
    if (!g || !s || !r || !f)
      return 2;
    if (mp_queue_get(g, &tok, &len, 0) == 0) {
      mp_free(tok);
      char pid[32];
      snprintf(pid, sizeof pid, "%lld", (long long)mp_getpid());
      if (mp_queue_put(s, pid, strlen(pid), MP_FOREVER) < 0 ||
          mp_queue_get(r, &tok, &len, MP_FOREVER) < 0 || mp_queue_put(f, "f", 1, MP_FOREVER) < 0)
        return 3;
      mp_free(tok);
    }
    mp_queue_free(g);
    mp_queue_free(s);
    mp_queue_free(r);
    mp_queue_free(f);
  }
  *out = mp_value_int(2 * i);
  return 0;
}

/* ---- the gate: one token, and the pid of the run that took it ------------------------ */

typedef struct gate {
  char name[128];
} gate;

static void put_to(const char *base, const char *suffix, const char *what) {
  mp_queue *q = open_q(mp_test_redis_url(), base, suffix);
  assert_non_null(q);
  assert_mp_ok(mp_queue_put(q, what, strlen(what), 5000));
  mp_queue_free(q);
}

/* Takes the next item of base``suffix (a minute at most) as a number. */
static int64_t take_from(const char *base, const char *suffix) {
  mp_queue *q = open_q(mp_test_redis_url(), base, suffix);
  void *buf = NULL;
  size_t len = 0;
  assert_non_null(q);
  assert_mp_ok(mp_queue_get(q, &buf, &len, 60000));
  char s[32];
  snprintf(s, sizeof s, "%.*s", (int)len, (const char *)buf);
  mp_free(buf);
  mp_queue_free(q);
  return strtoll(s, NULL, 10);
}

static void gate_open(gate *g, const char *name) {
  static const char *const parts[] = {"", "-started", "-release", "-finished"};
  snprintf(g->name, sizeof g->name, "%s-gate", name);
  for (int i = 0; i < 4; i++) {
    char q[160];
    snprintf(q, sizeof q, "%s%s", g->name, parts[i]);
    assert_mp_ok(mp_redis_queue_delete(mp_test_redis_url(), q, 5000));
  }
  put_to(g->name, "", "token");
}

/* Waits for the run that took the token: its pid. */
static int64_t gate_taken(gate *g) { return take_from(g->name, "-started"); }

static mp_value *gated_input(int64_t i, const char *url, const gate *g) {
  mp_value *v = mp_value_list();
  mp_value_append(v, mp_value_int(i));
  mp_value_append(v, mp_value_str(url));
  mp_value_append(v, mp_value_str(g->name));
  return v;
}

static uint64_t now_ms(void) { return mp_monotonic_ns() / 1000000u; }

/* A result's callback: runs in the caller's process, on the pool's thread. */
static void on_ready(mp_result *r, void *arg) {
  (void)r;
  mp_event_set(arg);
}

static int args_task(mp_args *args, mp_value **out) {
  (void)args;
  *out = NULL;
  return 0;
}

static int64_t int_of(const mp_value *v) {
  int64_t i = -12345;
  assert_mp_ok(mp_value_get_int(v, &i));
  return i;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void bad_arguments_are_refused(void **state) {
  (void)state;
  mp_pool *pool = (mp_pool *)1;
  assert_mp(MP_EINVAL, mp_redis_pool_create(&pool, mp_test_redis_url(), "a b", NULL));
  assert_null(pool);
  assert_mp(MP_EINVAL, mp_redis_pool_create(&pool, mp_test_redis_url(), NULL, NULL));
  assert_mp(MP_EINVAL, mp_redis_pool_create(&pool, "http://x", "p", NULL));
  mp_worker_opts wo = {0};
  wo.worker = "has space";
  assert_mp(MP_EINVAL, mp_worker_serve(mp_test_redis_url(), "p", &wo));
  assert_mp(MP_EINVAL, mp_worker_serve(mp_test_redis_url(), "{p}", NULL));
  /* argument lists carry objects that cannot travel: refused, the pool stays usable */
  pool = open_pool(fresh("args"), 0, 0);
  mp_args *a = NULL;
  mp_result *r = (mp_result *)1;
  assert_mp_ok(mp_args_create(&a));
  assert_mp(MP_ENOTSUP, mp_pool_apply_args_async(pool, args_task, a, &r));
  assert_null(r);
  assert_int_equal(mp_pool_size(pool), 2);
  mp_args_free(a);
  close_pool(pool);
}

static void redis_down_is_a_clear_error_in_time(void **state) {
  (void)state;
  mp_redis_pool_opts o = {0};
  o.connect_timeout_ms = 300;
  o.reconnect_ms = 300;
  mp_pool *pool = NULL;
  uint64_t t0 = now_ms();
  /* port 1 on loopback: nothing listens there */
  assert_mp(MP_EBROKEN, mp_redis_pool_create(&pool, "redis://127.0.0.1:1/0", "down", &o));
  assert_non_null(strstr(mp_last_error(), "127.0.0.1:1"));
  assert_null(pool);
  mp_worker_opts wo = {0};
  wo.connect_timeout_ms = 300;
  wo.reconnect_ms = 300;
  assert_mp(MP_EBROKEN, mp_worker_serve("redis://127.0.0.1:1/0", "down", &wo));
  assert_non_null(strstr(mp_last_error(), "mp_worker_serve"));
  assert_true(now_ms() - t0 < 20000);
}

static void terminate_cancels_what_no_worker_took(void **state) {
  (void)state;
  mp_pool *pool = open_pool(fresh("terminate"), 0, 0); /* no worker serves it */
  mp_result *r[3];
  mp_value *one = mp_value_int(1), *v = NULL;
  for (int i = 0; i < 3; i++)
    assert_mp_ok(mp_pool_apply_async(pool, square, one, &r[i]));
  assert_mp(MP_ETIMEDOUT, mp_result_get(r[0], &v, 0));
  assert_mp_ok(mp_pool_terminate(pool));
  for (int i = 0; i < 3; i++) {
    assert_mp(MP_ECANCELED, mp_result_get(r[i], &v, 0));
    mp_result_free(r[i]);
  }
  assert_mp(MP_ESTATE, mp_pool_apply_async(pool, square, one, &r[0]));
  mp_pool_free(pool);
  mp_value_free(one);
}

static void map_starmap_apply_and_imap_run_on_separate_workers(void **state) {
  (void)state;
  const char *name = fresh("map");
  mp_process *w1 = start_worker(name, "", 0, 0), *w2 = start_worker(name, "", 4, 0);
  mp_pool *pool = open_pool(name, 0, 0);
  enum { N = 500 };
  mp_value *in[N], *out[N];
  for (int i = 0; i < N; i++)
    in[i] = mp_value_int(i);
  for (size_t chunk = 0; chunk <= 7; chunk += 7) { /* the default, and 7 per task */
    assert_mp_ok(mp_pool_map(pool, square, (const mp_value *const *)in, N, chunk, out));
    for (int i = 0; i < N; i++) {
      assert_int_equal(int_of(out[i]), (int64_t)i * i);
      mp_value_free(out[i]);
    }
  }
  /* a failure comes back with its message; the others keep their outputs */
  int codes[N];
  mp_value_free(in[17]);
  in[17] = mp_value_int(-1);
  mp_map_opts mo = {1, 0};
  assert_mp(MP_ETASK,
            mp_pool_map_ex(pool, square, (const mp_value *const *)in, N, &mo, out, codes));
  assert_non_null(strstr(mp_last_error(), "minus one is refused"));
  for (int i = 0; i < N; i++) {
    assert_int_equal(codes[i], i == 17 ? MP_ETASK : 0);
    if (i != 17)
      assert_int_equal(int_of(out[i]), (int64_t)i * i);
    mp_value_free(out[i]);
  }
  /* starmap */
  mp_value *pairs[50], *sums[50];
  for (int i = 0; i < 50; i++) {
    pairs[i] = mp_value_tuple();
    mp_value_append(pairs[i], mp_value_int(i));
    mp_value_append(pairs[i], mp_value_int(1000));
  }
  assert_mp_ok(mp_pool_starmap(pool, add, (const mp_value *const *)pairs, 50, 3, sums));
  for (int i = 0; i < 50; i++) {
    assert_int_equal(int_of(sums[i]), i + 1000);
    mp_value_free(sums[i]);
    mp_value_free(pairs[i]);
  }
  /* apply_async with a callback, and apply */
  mp_result *r = NULL;
  mp_value *seven = mp_value_int(7), *v = NULL;
  mp_event *called = NULL;
  assert_mp_ok(mp_event_create(&called));
  assert_mp_ok(mp_pool_apply_async_cb(pool, square, seven, on_ready, called, &r));
  assert_mp_ok(mp_result_get(r, &v, 60000));
  assert_int_equal(int_of(v), 49);
  mp_result_free(r);
  assert_mp_ok(mp_pool_apply(pool, square, seven, &v));
  assert_int_equal(int_of(v), 49);
  mp_value_free(v);
  mp_value_free(seven);
  assert_mp_ok(mp_event_wait(called, 60000));
  mp_event_free(called);
  /* imap_unordered: every index once, then the end */
  mp_imap *it = NULL;
  assert_mp_ok(mp_pool_imap_unordered(pool, square, (const mp_value *const *)in, 200, 1, &it));
  char seen[200] = {0};
  for (int k = 0; k < 200; k++) {
    size_t idx = 0;
    int rc = mp_imap_next(it, &idx, &v, 60000);
    assert_true(idx < 200 && !seen[idx]);
    seen[idx] = 1;
    if (idx == 17)
      assert_int_equal(rc, MP_ETASK);
    else {
      assert_mp_ok(rc);
      assert_int_equal(int_of(v), (int64_t)idx * (int64_t)idx);
      mp_value_free(v);
    }
  }
  assert_mp(MP_EEOF, mp_imap_next(it, NULL, &v, 0));
  mp_imap_free(it);
  for (int i = 0; i < N; i++)
    mp_value_free(in[i]);
  close_pool(pool);
  stop_worker(w1);
  stop_worker(w2);
}

/* Which of ws has pid. */
static int which(mp_process **ws, int n, int64_t pid) {
  for (int i = 0; i < n; i++)
    if (mp_process_pid(ws[i]) == pid)
      return i;
  fail_msg("pid %lld is none of the workers", (long long)pid);
  return -1;
}

/* Takes count results of a map of gated() over n inputs: each index once (seen), 2 * i. */
static void take_gated(mp_imap *it, char *seen, size_t n, int count) {
  for (int k = 0; k < count; k++) {
    size_t idx = 0;
    mp_value *v = NULL;
    assert_mp_ok(mp_imap_next(it, &idx, &v, 120000));
    assert_true(idx < n && !seen[idx]);
    seen[idx] = 1;
    assert_int_equal(int_of(v), 2 * (int64_t)idx);
    mp_value_free(v);
  }
}

static void killed_worker_task_runs_elsewhere_once(void **state) {
  (void)state;
  const char *name = fresh("kill");
  gate g;
  gate_open(&g, name);
  mp_process *ws[2] = {start_worker(name, "", 1, 0), start_worker(name, "", 1, 0)};
  mp_pool *pool = open_pool(name, 3, 1000);
  enum { N = 40 };
  mp_value *in[N];
  for (int i = 0; i < N; i++)
    in[i] = gated_input(i, i == 5 ? mp_test_redis_url() : "", &g);
  mp_imap *it = NULL;
  assert_mp_ok(mp_pool_imap_unordered(pool, gated, (const mp_value *const *)in, N, 1, &it));
  int k = which(ws, 2, gate_taken(&g)); /* item 5 runs, and holds its worker */
  mp_process_kill(ws[k]);
  assert_mp_ok(mp_process_join(ws[k], 60000));
  char seen[N] = {0};
  take_gated(it, seen, N, N);
  assert_mp(MP_EEOF, mp_imap_next(it, NULL, NULL, 0));
  mp_imap_free(it);
  for (int i = 0; i < N; i++)
    mp_value_free(in[i]);
  close_pool(pool);
  mp_process_free(ws[k]);
  stop_worker(ws[1 - k]);
}

static void used_up_attempts_fail_with_the_worker_named(void **state) {
  (void)state;
  const char *name = fresh("doomed");
  gate g;
  gate_open(&g, name);
  char wname[64];
  snprintf(wname, sizeof wname, "doomed-%lld", (long long)mp_getpid());
  mp_process *w = start_worker(name, wname, 1, 0);
  mp_pool *pool = open_pool(name, 1, 500);
  mp_value *in = gated_input(3, mp_test_redis_url(), &g);
  mp_result *r = NULL;
  assert_mp_ok(mp_pool_apply_async(pool, gated, in, &r));
  assert_int_equal(gate_taken(&g), mp_process_pid(w));
  mp_process_kill(w);
  assert_mp_ok(mp_process_join(w, 60000));
  mp_process_free(w);
  assert_mp(MP_EWORKER, mp_result_get(r, NULL, 60000));
  assert_non_null(strstr(mp_last_error(), wname));
  mp_result_free(r);
  mp_value_free(in);
  /* the pool goes on: a new worker runs the next task */
  w = start_worker(name, "", 1, 0);
  mp_value *four = mp_value_int(4), *v = NULL;
  assert_mp_ok(mp_pool_apply(pool, square, four, &v));
  assert_int_equal(int_of(v), 16);
  mp_value_free(v);
  mp_value_free(four);
  mp_pool_free(pool); /* terminate */
  stop_worker(w);
}

#ifndef _WIN32
static void callback_count(mp_result *r, void *arg) {
  (void)r;
  (*(int *)arg)++; /* read after the pool is joined */
}

/* A worker frozen mid-task (SIGSTOP: its heartbeat stops too) is taken for dead; its task
 * runs on another worker and that answer is the one given. Thawed, the first worker ends
 * the task too and answers again: that second answer is dropped. The first worker's next
 * task proves its duplicate answer came (and went) before: answers are read in order. */
static void task_that_ran_twice_is_answered_once(void **state) {
  (void)state;
  const char *name = fresh("twice");
  gate g;
  gate_open(&g, name);
  mp_process *a = start_worker(name, "", 1, 0);
  mp_pool *pool = open_pool(name, 3, 500);
  mp_value *in = gated_input(21, mp_test_redis_url(), &g), *v = NULL;
  mp_result *r = NULL;
  int calls = 0;
  assert_mp_ok(mp_pool_apply_async_cb(pool, gated, in, callback_count, &calls, &r));
  assert_int_equal(gate_taken(&g), mp_process_pid(a));
  assert_int_equal(kill((pid_t)mp_process_pid(a), SIGSTOP), 0);
  mp_process *b = start_worker(name, "", 1, 0);
  assert_mp_ok(mp_result_get(r, &v, 60000)); /* b ran it again */
  assert_int_equal(int_of(v), 42);
  stop_worker(b);
  put_to(g.name, "-release", "go");
  assert_int_equal(kill((pid_t)mp_process_pid(a), SIGCONT), 0);
  assert_int_equal(take_from(g.name, "-finished"), 0); /* a ended its run: it answers next */
  mp_value *four = mp_value_int(4), *sq = NULL;
  assert_mp_ok(mp_pool_apply(pool, square, four, &sq)); /* only a is left to run it */
  assert_int_equal(int_of(sq), 16);
  assert_mp_ok(mp_result_get(r, &v, 0));
  assert_int_equal(int_of(v), 42);
  assert_mp_ok(mp_pool_close(pool));
  assert_mp_ok(mp_pool_join(pool, 60000));
  assert_int_equal(calls, 1);
  mp_result_free(r);
  mp_value_free(sq);
  mp_value_free(four);
  mp_value_free(in);
  mp_pool_free(pool);
  stop_worker(a);
}
#endif

#ifndef _WIN32
/* The directory of this process' private server: the shared one must stay up for the other
 * tests and for the gate, and the start methods' variants of this test run at once. */
static const char *private_dir(char *dir, size_t size) {
  snprintf(dir, size, "%s-pool-%lld", MP_REDIS_DIR, (long long)mp_getpid());
  return dir;
}

/* redis-fixture.sh CMD on the private server. */
static void private_server(const char *cmd) {
  char dir[1024];
  const char *argv[] = {"sh", MP_REDIS_FIXTURE, cmd, private_dir(dir, sizeof dir), NULL};
  mp_popen_opts o = {0};
  o.search_path = 1;
  int code = -1;
  assert_mp_ok(mp_call(argv, &o, &code));
  assert_int_equal(code, 0);
}

/* redis-server (append-only file, fsync always) killed with -9 and started again while a
 * map runs on it. When it goes down, some results are in, one task is held mid-run by a
 * worker (the gate, on the shared server, says so) and others wait in the stream; master
 * and workers find their connections dead. The map completes with every result exactly
 * once: what Redis kept runs, a task whose answer died with the connection runs again.
 * Tasks given after the restart go out on the master's reconnected connection. */
static void map_survives_a_redis_restart(void **state) {
  (void)state;
  enum { N = 300, BEFORE = 20, AFTER = 4 };
  char dir[1024], url[256];
  private_server("start");
  mp_test_redis_url_of(private_dir(dir, sizeof dir), url, sizeof url);
  const char *name = fresh("restart");
  gate g;
  gate_open(&g, name);
  mp_process *w1 = start_worker_at(url, name, "", 1, 0), *w2 = start_worker_at(url, name, "", 4, 0);
  mp_pool *pool = open_pool_at(url, name, 20, 1000); /* runs to spare: a slow machine */
  mp_value *in[N];
  for (int i = 0; i < N; i++)
    in[i] = gated_input(i, i == 5 ? mp_test_redis_url() : "", &g);
  mp_imap *it = NULL;
  assert_mp_ok(mp_pool_imap_unordered(pool, gated, (const mp_value *const *)in, N, 1, &it));
  gate_taken(&g); /* item 5 runs, and holds its worker */
  char seen[N] = {0};
  take_gated(it, seen, N, BEFORE); /* some results are in: the map is well under way */
  private_server("restart");
  mp_result *r[AFTER];
  mp_value *seven = mp_value_int(7);
  for (int i = 0; i < AFTER; i++)
    assert_mp_ok(mp_pool_apply_async(pool, square, seven, &r[i]));
  put_to(g.name, "-release", "go");    /* item 5 ends its run; its worker answers */
  take_gated(it, seen, N, N - BEFORE); /* the rest, each once */
  assert_mp(MP_EEOF, mp_imap_next(it, NULL, NULL, 0));
  mp_imap_free(it);
  for (int i = 0; i < AFTER; i++) {
    mp_value *v = NULL;
    assert_mp_ok(mp_result_get(r[i], &v, 120000));
    assert_int_equal(int_of(v), 49);
    mp_result_free(r[i]);
  }
  mp_value_free(seven);
  for (int i = 0; i < N; i++)
    mp_value_free(in[i]);
  close_pool(pool);
  stop_worker(w1);
  stop_worker(w2);
  private_server("stop");
}
#endif

#ifdef MP_PYTHON3
/* A Python worker written from docs/redis.md (tests/interop/redis_pool_peer.py) reads the
 * tasks of a map and answers them; the C master takes its answers like any worker's. */
static void python_worker_reads_and_answers_the_wire_format(void **state) {
  (void)state;
  const char *name = fresh("python");
  mp_pool *pool = open_pool(name, 0, 0);
  enum { N = 12 };
  mp_value *in[N], *out[N];
  for (int i = 0; i < N; i++)
    in[i] = mp_value_int(i + 1);
  const char *argv[] = {
      MP_PYTHON3, MP_INTEROP_DIR "/redis_pool_peer.py", mp_test_redis_url(), name, "4", NULL};
  mp_popen_opts o = {0};
  o.std_out.mode = MP_STDIO_PIPE;
  mp_popen *py = NULL;
  assert_mp_ok(mp_popen_create(&py, argv, &o));
  /* 12 inputs in chunks of 3: four tasks, each answered by Python */
  assert_mp_ok(mp_pool_map(pool, square, (const mp_value *const *)in, N, 3, out));
  for (int i = 0; i < N; i++) {
    assert_int_equal(int_of(out[i]), (int64_t)(i + 1) * (i + 1));
    mp_value_free(out[i]);
    mp_value_free(in[i]);
  }
  char *text = NULL;
  size_t len = 0;
  int code = -1;
  assert_mp_ok(mp_popen_communicate(py, NULL, 0, &text, &len, NULL, NULL, 60000));
  assert_mp_ok(mp_popen_returncode(py, &code));
  assert_int_equal(code, 0);
  assert_non_null(strstr(text, "answered 4"));
  mp_free(text);
  mp_popen_free(py);
  close_pool(pool);
}
#endif

static void worker_of_another_build_refuses(void **state) {
  (void)state;
  const char *name = fresh("other");
  char path[4096];
  mp_test_native_path(path, sizeof path, MP_REDISPOOL_OTHER);
  const char *argv[] = {path, mp_test_redis_url(), name, "other-build", NULL};
  mp_popen *w = NULL;
  assert_mp_ok(mp_popen_create(&w, argv, NULL));
  mp_pool *pool = open_pool(name, 0, 0);
  mp_value *four = mp_value_int(4), *v = NULL;
  assert_mp(MP_ECHILD, mp_pool_apply(pool, square, four, &v));
  assert_non_null(strstr(mp_last_error(), "other-build"));
  assert_non_null(strstr(mp_last_error(), "fingerprint"));
  assert_null(v);
  mp_value_free(four);
  mp_pool_free(pool);
  mp_popen_kill(w);
  mp_popen_wait(w, 60000);
  mp_popen_free(w);
}

static void workers_leave_and_join_while_a_map_runs(void **state) {
  (void)state;
  const char *name = fresh("join");
  enum { N = 20, FIRST = 5 };
  mp_process *w1 = start_worker(name, "", 1, FIRST); /* leaves after FIRST tasks */
  mp_pool *pool = open_pool(name, 0, 0);
  mp_value *in[N];
  for (int i = 0; i < N; i++)
    in[i] = mp_value_int(i);
  mp_imap *it = NULL;
  assert_mp_ok(mp_pool_imap_unordered(pool, whoami, (const mp_value *const *)in, N, 1, &it));
  char seen[N] = {0};
  mp_process *w2 = NULL;
  for (int n = 0; n < N; n++) {
    if (n == FIRST) { /* the first worker is gone; the map waits for the next one */
      mp_test_join_ok(w1);
      w2 = start_worker(name, "", 1, 0);
    }
    size_t idx = 0;
    mp_value *v = NULL, *vi, *vp;
    assert_mp_ok(mp_imap_next(it, &idx, &v, 120000));
    assert_true(idx < N && !seen[idx]);
    seen[idx] = 1;
    assert_mp_ok(mp_value_at(v, 0, &vi));
    assert_mp_ok(mp_value_at(v, 1, &vp));
    assert_int_equal(int_of(vi), (int64_t)idx);
    if (n >= FIRST)
      assert_int_equal(int_of(vp), mp_process_pid(w2));
    mp_value_free(v);
  }
  mp_imap_free(it);
  for (int i = 0; i < N; i++)
    mp_value_free(in[i]);
  close_pool(pool);
  stop_worker(w2);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bad_arguments_are_refused),
      cmocka_unit_test(redis_down_is_a_clear_error_in_time),
      cmocka_unit_test(terminate_cancels_what_no_worker_took),
      cmocka_unit_test(map_starmap_apply_and_imap_run_on_separate_workers),
      cmocka_unit_test(killed_worker_task_runs_elsewhere_once),
      cmocka_unit_test(used_up_attempts_fail_with_the_worker_named),
#ifndef _WIN32
      cmocka_unit_test(task_that_ran_twice_is_answered_once),
      cmocka_unit_test(map_survives_a_redis_restart),
#endif
#ifdef MP_PYTHON3
      cmocka_unit_test(python_worker_reads_and_answers_the_wire_format),
#endif
      cmocka_unit_test(worker_of_another_build_refuses),
      cmocka_unit_test(workers_leave_and_join_while_a_map_runs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
