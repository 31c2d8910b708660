/* Process pools: results, order, errors, dead workers, maxtasksperchild, initializers,
 * close/join/terminate. ctest runs this file under both start methods on Linux; on
 * Windows once (spawn). Each pool costs a spawn per worker under Wine, so tests share
 * pools where they can. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#ifdef _WIN32
#  include <windows.h>
#else
#  include <signal.h>
#  include <unistd.h>
#endif

/* ---- tasks (run in workers) ------------------------------------------------------------- */

static int64_t init_calls, init_arg; /* per worker process */

static int initializer(const mp_value *args) {
  init_calls++;
  return mp_value_get_int(args, &init_arg) < 0 ? -1 : 0;
}

static int failing_initializer(const mp_value *args) {
  (void)args;
  mp_set_error(MP_EINVAL, "no database for this worker");
  return -1;
}

/* Refuses to start once the file named by initargs exists. */
static int init_unless_file(const mp_value *args) {
  const char *path = "";
  mp_value_get_str(args, &path, NULL);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  fclose(f);
  mp_set_error(MP_EPERM, "refusing to start: the stop file exists");
  return -1;
}

static int64_t int_of(const mp_value *v) {
  int64_t x = -999;
  mp_value_get_int(v, &x);
  return x;
}

static int square(const mp_value *in, mp_value **out) {
  int64_t x = int_of(in);
  *out = mp_value_int(x * x);
  return 0;
}

static int add(mp_value *const *args, size_t n, mp_value **out) {
  int64_t s = 0;
  for (size_t i = 0; i < n; i++)
    s += int_of(args[i]);
  *out = mp_value_int(s);
  return 0;
}

static int getpid_task(const mp_value *in, mp_value **out) {
  (void)in;
  *out = mp_value_int(mp_getpid());
  return 0;
}

/* [init_calls, init_arg, pid] of the worker. */
static int init_state(const mp_value *in, mp_value **out) {
  (void)in;
  *out = mp_value_tuple();
  mp_value_append(*out, mp_value_int(init_calls));
  mp_value_append(*out, mp_value_int(init_arg));
  mp_value_append(*out, mp_value_int(mp_getpid()));
  return 0;
}

static int sleep_ms_task(const mp_value *in, mp_value **out) {
  (void)out;
  mp_sleep_ms((int)int_of(in));
  return 0;
}

/* Inputs: >= 0 squares; -1 fails with a message; -2 returns 7 with none; -3 aborts;
 * -4 calls exit(3). */
static int picky(const mp_value *in, mp_value **out) {
  int64_t x = int_of(in);
  if (x == -1)
    return mp_set_error(MP_EINVAL, "negative input %d refused", (int)x);
  if (x == -2)
    return 7;
  if (x == -3) {
#ifndef _WIN32
    signal(SIGABRT, SIG_DFL); /* a fork child inherits cmocka's handler */
#endif
    abort();
  }
  if (x == -4)
    exit(3);
  *out = mp_value_int(x * x);
  return 0;
}

/* Writes its pid to the file named by the input, then sleeps up to 60 s (until killed). */
static int announce_and_sleep(const mp_value *in, mp_value **out) {
  (void)out;
  const char *path;
  char tmp[600];
  if (mp_value_get_str(in, &path, NULL) < 0)
    return -1;
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL)
    return -1;
  fprintf(f, "%lld\n", (long long)mp_getpid());
  fclose(f);
  rename(tmp, path); /* the reader sees the whole pid or nothing */
  mp_sleep_ms(60000);
  return 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static mp_pool *make_pool(int n, const mp_pool_opts *o) {
  mp_pool *p = NULL;
  assert_mp_ok(mp_pool_create(&p, n, o));
  return p;
}

static void end_pool(mp_pool *p) {
  assert_mp_ok(mp_pool_close(p));
  assert_mp_ok(mp_pool_join(p, 30000));
  mp_pool_free(p);
}

static mp_value **int_inputs(size_t n, int64_t base) {
  mp_value **v = calloc(n, sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < n; i++)
    assert_non_null(v[i] = mp_value_int(base + (int64_t)i));
  return v;
}

static void free_values(mp_value **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    mp_value_free(v[i]);
  free(v);
}

#define INS(v) ((const mp_value *const *)(v))

static void kill_pid(int64_t pid) {
#ifdef _WIN32
  HANDLE h = OpenProcess(PROCESS_TERMINATE, FALSE, (DWORD)pid);
  assert_non_null(h);
  assert_true(TerminateProcess(h, 9));
  CloseHandle(h);
#else
  assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
#endif
}

/* Waits (up to 30 s) until the task wrote its pid to path. */
static int64_t read_pid_file(const char *path) {
  for (int i = 0; i < 3000; i++) {
    FILE *f = fopen(path, "r");
    if (f) {
      long long pid = 0;
      int ok = fscanf(f, "%lld", &pid) == 1;
      fclose(f);
      if (ok)
        return pid;
    }
    mp_sleep_ms(10); /* waiting for another process's file: there is no event */
  }
  fail_msg("the task never wrote %s", path);
  return 0;
}

static void temp_path(char *buf, size_t size, const char *tag) {
#ifdef _WIN32
  char dir[MAX_PATH];
  GetTempPathA(sizeof dir, dir);
#else
  const char *dir = "/tmp/";
#endif
  snprintf(buf, size, "%smp_pool_%s_%lld", dir, tag, (long long)mp_getpid());
  remove(buf);
}

/* ---- tests ------------------------------------------------------------------------------ */

static int callbacks;
static mp_lock *cb_lock;

static void count_callback(mp_result *r, void *arg) {
  assert_int_equal(mp_result_ready(r), 1);
  mp_lock_acquire(cb_lock, MP_FOREVER);
  callbacks += *(int *)arg;
  mp_lock_release(cb_lock);
}

static void apply_async_gives_results(void **state) {
  (void)state;
  mp_pool *p = make_pool(2, NULL);
  assert_int_equal(mp_pool_size(p), 2);
  assert_mp_ok(mp_lock_create(&cb_lock));
  callbacks = 0;
  int one = 1;
  mp_result *r[20];
  for (int i = 0; i < 20; i++) {
    mp_value *in = mp_value_int(i);
    assert_mp_ok(mp_pool_apply_async_cb(p, square, in, count_callback, &one, &r[i]));
    mp_value_free(in);
  }
  for (int i = 0; i < 20; i++) {
    mp_value *v = NULL;
    assert_mp_ok(mp_result_get(r[i], &v, 30000));
    assert_int_equal(int_of(v), i * i);
    assert_int_equal(mp_result_ready(r[i]), 1);
    assert_int_equal(mp_result_successful(r[i]), 1);
    assert_mp_ok(mp_result_wait(r[i], 0));
    mp_result_free(r[i]);
  }
  mp_value *out = NULL, *in = mp_value_int(12);
  assert_mp_ok(mp_pool_apply(p, square, in, &out));
  assert_int_equal(int_of(out), 144);
  mp_value_free(out);
  mp_value_free(in);
  assert_mp_ok(mp_pool_apply(p, getpid_task, NULL, &out)); /* no input: nil */
  assert_true(int_of(out) != mp_getpid());
  mp_value_free(out);
  end_pool(p);
  /* Every callback ran before its result was ready to the waiting thread or at join. */
  assert_int_equal(callbacks, 20);
  mp_lock_free(cb_lock);
}

static void map_keeps_order_for_every_chunksize(void **state) {
  (void)state;
  enum { N = 10000 };
  mp_pool *p = make_pool(3, NULL);
  mp_value **in = int_inputs(N, 0);
  mp_value **out = calloc(N, sizeof *out);
  size_t sizes[] = {1, 7, 0, 333, N, 2 * N};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    assert_mp_ok(mp_pool_map(p, square, INS(in), N, sizes[s], out));
    for (int64_t i = 0; i < N; i++)
      assert_int_equal(int_of(out[i]), i * i);
    free_values(out, N);
    out = calloc(N, sizeof *out);
  }
  assert_mp_ok(mp_pool_map(p, square, NULL, 0, 0, NULL)); /* nothing to do */
  /* starmap: each input's items are the arguments. */
  mp_value *pairs[50];
  for (int i = 0; i < 50; i++) {
    pairs[i] = mp_value_tuple();
    mp_value_append(pairs[i], mp_value_int(i));
    mp_value_append(pairs[i], mp_value_int(1000));
  }
  assert_mp_ok(mp_pool_starmap(p, add, INS(pairs), 50, 3, out));
  for (int i = 0; i < 50; i++) {
    assert_int_equal(int_of(out[i]), i + 1000);
    mp_value_free(out[i]);
    out[i] = NULL;
  }
  assert_mp(MP_EINVAL, mp_pool_starmap(p, add, INS(in), 5, 1, out)); /* ints, not tuples */
  for (int i = 0; i < 50; i++)
    mp_value_free(pairs[i]);
  free(out);
  free_values(in, N);
  end_pool(p);
}

static void imap_unordered_gives_each_result_once(void **state) {
  (void)state;
  enum { N = 2000 };
  mp_pool *p = make_pool(2, NULL);
  mp_value **in = int_inputs(N, 0);
  mp_imap *it = NULL;
  assert_mp_ok(mp_pool_imap_unordered(p, square, INS(in), N, 5, &it));
  char *seen = calloc(N, 1);
  for (int k = 0; k < N; k++) {
    size_t idx = N;
    mp_value *v = NULL;
    assert_mp_ok(mp_imap_next(it, &idx, &v, 30000));
    assert_true(idx < N);
    assert_int_equal(seen[idx], 0);
    seen[idx] = 1;
    assert_int_equal(int_of(v), (int64_t)idx * (int64_t)idx);
    mp_value_free(v);
  }
  assert_mp(MP_EEOF, mp_imap_next(it, NULL, NULL, 0));
  mp_imap_free(it);
  /* An iterator freed early drops the rest without harm. */
  assert_mp_ok(mp_pool_imap_unordered(p, square, INS(in), N, 1, &it));
  mp_imap_free(it);
  free(seen);
  free_values(in, N);
  end_pool(p);
}

static void task_errors_carry_their_messages(void **state) {
  (void)state;
  mp_pool *p = make_pool(2, NULL);
  mp_value *in = mp_value_int(-1), *out = NULL;
  mp_result *r;
  assert_mp_ok(mp_pool_apply_async(p, picky, in, &r));
  assert_mp(MP_ETASK, mp_result_get(r, &out, 30000));
  assert_string_equal(mp_last_error(), "negative input -1 refused");
  assert_null(out);
  assert_int_equal(mp_result_successful(r), 0);
  mp_result_free(r);
  mp_value_free(in);
  in = mp_value_int(-2);
  assert_mp(MP_ETASK, mp_pool_apply(p, picky, in, &out));
  assert_non_null(strstr(mp_last_error(), "returned 7"));
  mp_value_free(in);
  /* In a map the lowest failed index wins and no output is left behind. */
  mp_value **many = int_inputs(100, 0);
  mp_value_free(many[40]);
  many[40] = mp_value_int(-1);
  mp_value_free(many[70]);
  many[70] = mp_value_int(-2);
  mp_value *outs[100];
  assert_mp(MP_ETASK, mp_pool_map(p, picky, INS(many), 100, 3, outs));
  assert_non_null(strstr(mp_last_error(), "input 40: negative input -1 refused"));
  for (int i = 0; i < 100; i++)
    assert_null(outs[i]);
  /* An input nested too deeply for MessagePack: refused by apply_async at once, and by
   * map (which encodes as it sends) for that input only. */
  mp_value *deep = mp_value_int(1);
  for (int d = 0; d < MP_VALUE_MAX_DEPTH + 2; d++) {
    mp_value *l = mp_value_list();
    mp_value_append(l, deep);
    deep = l;
  }
  mp_value_free(many[7]);
  many[7] = deep;
  assert_mp(MP_EINVAL, mp_pool_apply_async(p, picky, deep, &r));
  assert_null(r);
  assert_mp(MP_EINVAL, mp_pool_map(p, picky, INS(many), 100, 1, outs));
  assert_non_null(strstr(mp_last_error(), "input 7: pool: the input of task"));
  assert_non_null(strstr(mp_last_error(), "could not be encoded"));
  free_values(many, 100);
  end_pool(p);
}

/* The victim's worker is killed while it runs; tasks queued behind it go elsewhere. */
static void a_killed_worker_fails_only_its_task(void **state) {
  (void)state;
  char path[512];
  temp_path(path, sizeof path, "victim");
  mp_pool *p = make_pool(2, NULL);
  mp_value *pv = mp_value_str(path);
  mp_result *victim, *rest[60];
  assert_mp_ok(mp_pool_apply_async(p, announce_and_sleep, pv, &victim));
  for (int i = 0; i < 60; i++) {
    mp_value *in = mp_value_int(i);
    assert_mp_ok(mp_pool_apply_async(p, square, in, &rest[i]));
    mp_value_free(in);
  }
  int64_t pid = read_pid_file(path);
  kill_pid(pid);
  assert_mp(MP_EWORKER, mp_result_get(victim, NULL, 30000));
  char want[64];
  snprintf(want, sizeof want, "worker pid %lld ", (long long)pid);
  assert_non_null(strstr(mp_last_error(), want));
  assert_non_null(strstr(mp_last_error(), "while running task 0"));
#ifndef _WIN32
  assert_non_null(strstr(mp_last_error(), "died with signal 9"));
#endif
  for (int i = 0; i < 60; i++) {
    mp_value *v;
    assert_mp_ok(mp_result_get(rest[i], &v, 30000));
    assert_int_equal(int_of(v), i * i);
    mp_result_free(rest[i]);
  }
  mp_result_free(victim);
  mp_value_free(pv);
  remove(path);
  /* 1,000 more tasks run; the master replaced the worker before it scheduled them, so
   * afterwards there are two pids, neither the dead one. */
  mp_value **in = int_inputs(1000, 0), **out = calloc(1000, sizeof *out);
  assert_mp_ok(mp_pool_map(p, square, INS(in), 1000, 1, out));
  for (int64_t i = 0; i < 1000; i++)
    assert_int_equal(int_of(out[i]), i * i);
  int64_t pids[4];
  size_t n = 0;
  assert_mp_ok(mp_pool_pids(p, pids, 4, &n));
  assert_int_equal(n, 2);
  assert_true(pids[0] != pid && pids[1] != pid);
  free_values(out, 1000);
  free_values(in, 1000);
  end_pool(p);
}

/* Tasks that abort() or exit() kill their worker: only they fail. */
static void a_task_that_kills_its_worker_fails_alone(void **state) {
  (void)state;
  enum { N = 300 };
  mp_pool *p = make_pool(2, NULL);
  mp_value **in = int_inputs(N, 0);
  mp_value_free(in[100]);
  in[100] = mp_value_int(-3); /* abort() */
  mp_value_free(in[200]);
  in[200] = mp_value_int(-4); /* exit(3) */
  mp_imap *it;
  assert_mp_ok(mp_pool_imap_unordered(p, picky, INS(in), N, 1, &it));
  char seen[N] = {0};
  for (int k = 0; k < N; k++) {
    size_t idx = N;
    mp_value *v = NULL;
    int rc = mp_imap_next(it, &idx, &v, 30000);
    assert_true(idx < N);
    assert_int_equal(seen[idx], 0);
    seen[idx] = 1;
    if (idx == 100 || idx == 200) {
      assert_mp(MP_EWORKER, rc);
      assert_non_null(strstr(mp_last_error(), "while running task"));
#ifndef __SANITIZE_ADDRESS__ /* LeakSanitizer runs at exit() and may abort the worker */
      if (idx == 200)
        assert_non_null(strstr(mp_last_error(), "exited with code 3"));
#endif
    } else {
      assert_mp_ok(rc);
      assert_int_equal(int_of(v), (int64_t)idx * (int64_t)idx);
    }
    mp_value_free(v);
  }
  assert_mp(MP_EEOF, mp_imap_next(it, NULL, NULL, 0));
  mp_imap_free(it);
  free_values(in, N);
  mp_value **more = int_inputs(1000, 5), **out = calloc(1000, sizeof *out);
  assert_mp_ok(mp_pool_map(p, square, INS(more), 1000, 0, out));
  for (int64_t i = 0; i < 1000; i++)
    assert_int_equal(int_of(out[i]), (i + 5) * (i + 5));
  free_values(out, 1000);
  free_values(more, 1000);
  end_pool(p);
}

static void maxtasksperchild_and_initializer(void **state) {
  (void)state;
  mp_pool_opts o;
  memset(&o, 0, sizeof o);
  o.maxtasksperchild = 2;
  o.initializer = initializer;
  mp_value *ia = mp_value_int(42);
  o.initargs = ia;
  mp_pool *p = make_pool(1, &o);
  mp_value_free(ia); /* the pool keeps a copy */
  int64_t pids[8];
  for (int i = 0; i < 8; i++) {
    mp_value *v = NULL;
    assert_mp_ok(mp_pool_apply(p, init_state, NULL, &v));
    mp_value *calls, *arg, *pid;
    mp_value_at(v, 0, &calls);
    mp_value_at(v, 1, &arg);
    mp_value_at(v, 2, &pid);
    assert_int_equal(int_of(calls), 1); /* once per worker */
    assert_int_equal(int_of(arg), 42);
    pids[i] = int_of(pid);
    mp_value_free(v);
  }
  for (int i = 0; i < 8; i += 2) {
    assert_int_equal(pids[i], pids[i + 1]); /* two tasks per worker */
    if (i > 0)
      assert_true(pids[i] != pids[i - 1]);
  }
  end_pool(p);
  /* A failing initializer fails the pool's creation with its message. */
  o.initializer = failing_initializer;
  o.initargs = NULL;
  mp_pool *bad = (mp_pool *)&o;
  assert_mp(MP_ECHILD, mp_pool_create(&bad, 1, &o));
  assert_null(bad);
  assert_non_null(strstr(mp_last_error(), "no database for this worker"));
}

/* When no replacement worker can start, queued work fails instead of waiting forever. */
static void a_pool_without_workers_fails_its_tasks(void **state) {
  (void)state;
  char path[512];
  temp_path(path, sizeof path, "stop");
  mp_pool_opts o;
  memset(&o, 0, sizeof o);
  o.initializer = init_unless_file;
  mp_value *pv = mp_value_str(path), *in = mp_value_int(-3), *out = NULL;
  o.initargs = pv;
  mp_pool *p = make_pool(1, &o);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  assert_mp(MP_EWORKER, mp_pool_apply(p, picky, in, &out)); /* abort(): a new worker is due */
  mp_value_free(in);
  in = mp_value_int(4);
  assert_mp(MP_ECHILD, mp_pool_apply(p, square, in, &out));
  assert_non_null(strstr(mp_last_error(), "refusing to start: the stop file exists"));
  end_pool(p);
  remove(path);
  mp_value_free(in);
  mp_value_free(pv);
}

static void terminate_cancels_pending_work(void **state) {
  (void)state;
  mp_pool *p = make_pool(2, NULL);
  mp_result *r[10];
  mp_value *in = mp_value_int(30000);
  for (int i = 0; i < 10; i++)
    assert_mp_ok(mp_pool_apply_async(p, sleep_ms_task, in, &r[i]));
  uint64_t t0 = mp_monotonic_ns();
  /* join waits for queued work: it times out while the tasks sleep. */
  assert_mp(MP_ESTATE, mp_pool_join(p, 0)); /* not closed yet */
  assert_mp_ok(mp_pool_close(p));
  assert_mp(MP_ETIMEDOUT, mp_pool_join(p, 100));
  mp_result *late = (mp_result *)p;
  assert_mp(MP_ESTATE, mp_pool_apply_async(p, square, in, &late));
  assert_null(late);
  assert_non_null(strstr(mp_last_error(), "closed"));
  assert_mp_ok(mp_pool_terminate(p));
  for (int i = 0; i < 10; i++) {
    assert_int_equal(mp_result_ready(r[i]), 1);
    assert_mp(MP_ECANCELED, mp_result_get(r[i], NULL, 0));
    mp_result_free(r[i]);
  }
  assert_true(mp_monotonic_ns() - t0 < 20000000000ull); /* not the tasks' 30 s */
  size_t n = 9;
  int64_t pids[2];
  assert_mp_ok(mp_pool_pids(p, pids, 2, &n));
  assert_int_equal(n, 0);
  assert_mp_ok(mp_pool_join(p, 0));
  assert_mp_ok(mp_pool_terminate(p)); /* twice is harmless */
  mp_pool_free(p);
  mp_value_free(in);
}

static void a_task_over_its_time_limit_is_killed(void **state) {
  (void)state;
  mp_pool_opts o;
  memset(&o, 0, sizeof o);
  o.task_timeout_ms = 300;
  mp_pool *p = make_pool(1, &o);
  mp_value *in = mp_value_int(30000), *out = NULL;
  assert_mp(MP_ETIMEDOUT, mp_pool_apply(p, sleep_ms_task, in, &out));
  assert_non_null(strstr(mp_last_error(), "ran longer than 300 ms"));
  mp_value_free(in);
  in = mp_value_int(9);
  assert_mp_ok(mp_pool_apply(p, square, in, &out));
  assert_int_equal(int_of(out), 81);
  mp_value_free(out);
  mp_value_free(in);
  /* A result not ready in time: MP_ETIMEDOUT from get, and the task still finishes. */
  mp_result *r;
  in = mp_value_int(100);
  assert_mp_ok(mp_pool_apply_async(p, sleep_ms_task, in, &r));
  assert_mp(MP_ETIMEDOUT, mp_result_get(r, &out, 0));
  assert_int_equal(mp_result_ready(r), 0);
  assert_mp(MP_ESTATE, mp_result_successful(r));
  assert_mp_ok(mp_result_wait(r, 30000));
  mp_result_free(r);
  mp_value_free(in);
  end_pool(p);
}

static void bad_arguments_are_refused(void **state) {
  (void)state;
  mp_pool_opts o;
  memset(&o, 0, sizeof o);
  mp_pool *p = NULL;
  assert_mp(MP_EINVAL, mp_pool_create(NULL, 1, NULL));
  assert_mp(MP_EINVAL, mp_pool_create(&p, -1, NULL));
  o.maxtasksperchild = -1;
  assert_mp(MP_EINVAL, mp_pool_create(&p, 1, &o));
  o.maxtasksperchild = 0;
  o.task_timeout_ms = -5;
  assert_mp(MP_EINVAL, mp_pool_create(&p, 1, &o));
  o.task_timeout_ms = 0;
  o.method = (mp_start_method)77;
  assert_mp(MP_EINVAL, mp_pool_create(&p, 1, &o));
  assert_null(p);
  mp_result *r;
  mp_value *out;
  mp_imap *it;
  assert_mp(MP_EINVAL, mp_pool_apply_async(NULL, square, NULL, &r));
  assert_mp(MP_EINVAL, mp_pool_apply(NULL, square, NULL, &out));
  assert_mp(MP_EINVAL, mp_pool_map(NULL, square, NULL, 0, 0, NULL));
  assert_mp(MP_EINVAL, mp_pool_imap_unordered(NULL, square, NULL, 0, 0, &it));
  assert_mp(MP_EINVAL, mp_pool_close(NULL));
  assert_mp(MP_EINVAL, mp_pool_join(NULL, 0));
  assert_mp(MP_EINVAL, mp_pool_terminate(NULL));
  assert_mp(MP_EINVAL, mp_result_get(NULL, &out, 0));
  assert_mp(MP_EINVAL, mp_result_wait(NULL, 0));
  assert_mp(MP_EINVAL, mp_imap_next(NULL, NULL, &out, 0));
  mp_pool_free(NULL);
  mp_result_free(NULL);
  mp_imap_free(NULL);
  p = make_pool(1, NULL);
  assert_mp(MP_EINVAL, mp_pool_apply_async(p, NULL, NULL, &r));
  assert_mp(MP_EINVAL, mp_pool_apply_async(p, square, NULL, NULL));
  assert_mp(MP_EINVAL, mp_pool_map(p, square, NULL, 3, 0, NULL));
  assert_mp(MP_EINVAL, mp_pool_imap_unordered(p, square, NULL, 0, 0, NULL));
  assert_mp(MP_EINVAL, mp_pool_pids(p, NULL, 1, NULL));
  assert_mp(MP_EINVAL, mp_pool_join(p, -7));
  assert_mp_ok(mp_pool_apply(p, square, NULL, &out)); /* still usable */
  mp_value_free(out);
  end_pool(p);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(apply_async_gives_results),
      cmocka_unit_test(map_keeps_order_for_every_chunksize),
      cmocka_unit_test(imap_unordered_gives_each_result_once),
      cmocka_unit_test(task_errors_carry_their_messages),
      cmocka_unit_test(a_killed_worker_fails_only_its_task),
      cmocka_unit_test(a_task_that_kills_its_worker_fails_alone),
      cmocka_unit_test(maxtasksperchild_and_initializer),
      cmocka_unit_test(a_pool_without_workers_fails_its_tasks),
      cmocka_unit_test(terminate_cancels_pending_work),
      cmocka_unit_test(a_task_over_its_time_limit_is_killed),
      cmocka_unit_test(bad_arguments_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
