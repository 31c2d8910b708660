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

/* Once the file initargs".armed" exists, a starting worker waits for initargs".open":
 * it holds the master in the replacement's start-up for as long as a test needs. */
static int init_behind_gate(const mp_value *args) {
  const char *base = "";
  char armed[600], open[600];
  mp_value_get_str(args, &base, NULL);
  snprintf(armed, sizeof armed, "%s.armed", base);
  snprintf(open, sizeof open, "%s.open", base);
  FILE *f = fopen(armed, "r");
  if (f == NULL)
    return 0;
  fclose(f);
  for (int i = 0; i < 3000; i++) {
    if ((f = fopen(open, "r")) != NULL) {
      fclose(f);
      return 0;
    }
    mp_sleep_ms(10); /* waiting for another process's file: there is no event */
  }
  mp_set_error(MP_ETIMEDOUT, "the gate %s never opened", open);
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

/* Sleeps x ms for inputs x >= 1000 and returns x; squares smaller inputs. */
static int sleep_or_square(const mp_value *in, mp_value **out) {
  int64_t x = int_of(in);
  if (x >= 1000)
    mp_sleep_ms((int)x);
  *out = mp_value_int(x >= 1000 ? x : x * x);
  return 0;
}

/* Arguments [queue, dict, connection]: puts the dict into the queue, says "ok" on the
 * connection and returns the dict's size. */
static int objects_task(mp_args *a, mp_value **out) {
  mp_queue *q = NULL;
  const mp_value *d = NULL;
  mp_conn *c = NULL;
  size_t n = 0;
  if (mp_args_get_queue(a, 0, &q) < 0 || mp_args_get_value(a, 1, &d) < 0 ||
      mp_args_get_conn(a, 2, &c) < 0 || mp_value_len(d, &n) < 0)
    return -1;
  if (mp_queue_put_value(q, d, 30000) < 0 || mp_conn_send(c, "ok", 2) < 0)
    return -1;
  *out = mp_value_int((int64_t)n);
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

/* Waits (up to 30 s) until the process pid (not this one's child) has exited. */
static void wait_dead(int64_t pid) {
#ifdef _WIN32
  HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)pid);
  if (h == NULL)
    return; /* already gone */
  assert_int_equal(WaitForSingleObject(h, 30000), WAIT_OBJECT_0);
  CloseHandle(h);
#else
  char path[64];
  snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
  for (int i = 0; i < 3000; i++) {
    char line[512] = "";
    FILE *f = fopen(path, "r");
    if (f == NULL)
      return; /* reaped */
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    const char *end = strrchr(line, ')'); /* "pid (name) state ..." */
    if (end && (end[2] == 'Z' || end[2] == 'X'))
      return;
    mp_sleep_ms(10); /* another process's state: there is no event to wait on */
  }
  fail_msg("process %lld never exited", (long long)pid);
#endif
}

static void touch(const char *base, const char *suffix) {
  char path[600];
  snprintf(path, sizeof path, "%s%s", base, suffix);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
}

static void remove_with(const char *base, const char *suffix) {
  char path[600];
  snprintf(path, sizeof path, "%s%s", base, suffix);
  remove(path);
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

/* A task takes a queue, a dict and a pipe end; the caller frees its argument list and its
 * own pipe end at once (the pool holds copies), and nothing leaks over many tasks. */
static void a_task_takes_a_queue_a_dict_and_a_connection(void **state) {
  (void)state;
  enum { N = 30 };
  mp_pool *p = make_pool(2, NULL);
  mp_queue *q = NULL;
  assert_mp_ok(mp_queue_create(&q, 0));
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_value *d = mp_value_dict();
  mp_value_dict_set(d, mp_value_str("job"), mp_value_int(7));
  mp_value_dict_set(d, mp_value_str("tags"), mp_value_list());
  mp_value *out = NULL;
  mp_args *args = NULL;
  assert_mp_ok(mp_args_create(&args));
  assert_mp_ok(mp_args_add_queue(args, q));
  assert_mp_ok(mp_args_add_value(args, d));
  assert_mp_ok(mp_args_add_conn(args, b));
  assert_mp_ok(mp_pool_apply_args(p, objects_task, args, &out)); /* warms both workers up */
  assert_int_equal(int_of(out), 2);
  mp_value_free(out);
  int before = mp_test_open_handles();
  mp_result *r[N];
  for (int i = 0; i < N; i++)
    assert_mp_ok(mp_pool_apply_args_async(p, objects_task, args, &r[i]));
  mp_args_free(args);
  mp_conn_free(b); /* the tasks hold their own copies of this end */
  for (int i = 0; i <= N; i++) {
    mp_value *got = NULL;
    assert_mp_ok(mp_queue_get_value(q, &got, 30000));
    assert_true(mp_value_equal(got, d));
    mp_value_free(got);
    void *msg = NULL;
    size_t len = 0;
    assert_mp_ok(mp_conn_recv(a, &msg, &len, 30000));
    assert_int_equal(len, 2);
    mp_free(msg);
  }
  for (int i = 0; i < N; i++) {
    assert_mp_ok(mp_result_take(r[i], &out, 30000));
    assert_int_equal(int_of(out), 2);
    mp_value_free(out);
    mp_result_free(r[i]);
  }
  int after = mp_test_open_handles();
  if (before > 0)                        /* Wine's GetProcessHandleCount counts none */
    assert_int_equal(after, before - 1); /* b is gone, and nothing else stayed */
  /* Every task is over: the last copy of b went with it, so a sees the end. */
  void *msg = NULL;
  size_t len = 0;
  assert_mp(MP_EEOF, mp_conn_recv(a, &msg, &len, 30000));
  /* An object that cannot be passed is refused at once, and the pool goes on. */
  mp_conn *closed, *other;
  assert_mp_ok(mp_pipe(&closed, &other, 1));
  mp_conn_close(closed);
  assert_mp_ok(mp_args_create(&args));
  assert_mp_ok(mp_args_add_queue(args, q));
  assert_mp_ok(mp_args_add_value(args, d));
  assert_mp_ok(mp_args_add_conn(args, closed));
  mp_result *bad = (mp_result *)q;
  assert_mp(MP_ECLOSED, mp_pool_apply_args_async(p, objects_task, args, &bad));
  assert_null(bad);
  assert_mp(MP_EINVAL, mp_pool_apply_args_async(p, objects_task, NULL, &bad));
  mp_args_free(args);
  mp_conn_free(closed);
  mp_conn_free(other);
  mp_value_free(d);
  mp_conn_free(a);
  mp_queue_free(q);
  end_pool(p);
}

/* Each of n objects_task results says want, and each task's message came through a. */
static void take_objects_results(mp_result **r, int n, mp_conn *a, int64_t want) {
  for (int i = 0; i < n; i++) {
    mp_value *out = NULL;
    assert_mp_ok(mp_result_take(r[i], &out, 30000));
    assert_int_equal(int_of(out), want);
    mp_value_free(out);
    mp_result_free(r[i]);
    void *msg = NULL;
    size_t len = 0;
    assert_mp_ok(mp_conn_recv(a, &msg, &len, 30000));
    mp_free(msg);
  }
}

/* Argument tasks queued on a worker that dies run on its replacement, with their handles
 * passed again. */
static void argument_tasks_behind_a_dead_worker_run_elsewhere(void **state) {
  (void)state;
  char path[512];
  temp_path(path, sizeof path, "argsvictim");
  mp_pool *p = make_pool(1, NULL);
  mp_queue *q = NULL;
  assert_mp_ok(mp_queue_create(&q, 0));
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_value *d = mp_value_dict();
  mp_value_dict_set(d, mp_value_int(1), mp_value_nil());
  mp_args *args = NULL;
  assert_mp_ok(mp_args_create(&args));
  assert_mp_ok(mp_args_add_queue(args, q));
  assert_mp_ok(mp_args_add_value(args, d));
  assert_mp_ok(mp_args_add_conn(args, b));
  mp_value *victim_in = mp_value_str(path);
  mp_result *victim, *r[3];
  assert_mp_ok(mp_pool_apply_async(p, announce_and_sleep, victim_in, &victim));
  for (int i = 0; i < 3; i++) /* more than the workers: queued on the busy one */
    assert_mp_ok(mp_pool_apply_args_async(p, objects_task, args, &r[i]));
  mp_args_free(args);
  kill_pid(read_pid_file(path));
  assert_mp(MP_EWORKER, mp_result_get(victim, NULL, 30000));
  take_objects_results(r, 3, a, 1);
  mp_result_free(victim);
  mp_value_free(victim_in);
  mp_value_free(d);
  mp_conn_free(a);
  mp_conn_free(b);
  mp_queue_free(q);
  remove(path);
  end_pool(p);
}

/* A worker that died while the master was busy elsewhere (here: waiting for another
 * worker's replacement to start) still looks alive when argument tasks are dealt out; the
 * handles it cannot take (Windows) mark it gone, and its tasks run on the others. */
static void argument_tasks_dealt_to_an_unnoticed_dead_worker_run_elsewhere(void **state) {
  (void)state;
  enum { N = 5 };
  char gate[512], pa[512], pb[512];
  temp_path(gate, sizeof gate, "gate");
  temp_path(pa, sizeof pa, "deadA");
  temp_path(pb, sizeof pb, "deadB");
  mp_value *gv = mp_value_str(gate), *va = mp_value_str(pa), *vb = mp_value_str(pb);
  mp_pool_opts o;
  memset(&o, 0, sizeof o);
  o.initializer = init_behind_gate;
  o.initargs = gv;
  mp_pool *p = make_pool(2, &o);
  mp_result *ra, *rb, *r[N];
  assert_mp_ok(mp_pool_apply_async(p, announce_and_sleep, va, &ra));
  assert_mp_ok(mp_pool_apply_async(p, announce_and_sleep, vb, &rb)); /* one on each worker */
  int64_t a_pid = read_pid_file(pa), b_pid = read_pid_file(pb);
  touch(gate, ".armed");
  kill_pid(a_pid);
  /* A's task fails before its replacement starts: the master now waits in that start-up,
   * blind to B, while B dies and the tasks queue up. */
  assert_mp(MP_EWORKER, mp_result_get(ra, NULL, 30000));
  kill_pid(b_pid);
  wait_dead(b_pid);
  mp_queue *q = NULL;
  assert_mp_ok(mp_queue_create(&q, 0));
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_value *d = mp_value_dict();
  mp_args *args = NULL;
  assert_mp_ok(mp_args_create(&args));
  assert_mp_ok(mp_args_add_queue(args, q));
  assert_mp_ok(mp_args_add_value(args, d));
  assert_mp_ok(mp_args_add_conn(args, b));
  for (int i = 0; i < N; i++) /* more than the workers: some are dealt to B */
    assert_mp_ok(mp_pool_apply_args_async(p, objects_task, args, &r[i]));
  mp_args_free(args);
  touch(gate, ".open");
  assert_mp(MP_EWORKER, mp_result_get(rb, NULL, 30000));
  take_objects_results(r, N, a, 0);
  mp_result_free(ra);
  mp_result_free(rb);
  mp_value_free(d);
  mp_conn_free(a);
  mp_conn_free(b);
  mp_queue_free(q);
  end_pool(p);
  remove(pa);
  remove(pb);
  remove_with(gate, ".armed");
  remove_with(gate, ".open");
  mp_value_free(gv);
  mp_value_free(va);
  mp_value_free(vb);
}

/* map_ex: one failed input does not take the other outputs with it. */
static void map_ex_gives_per_item_results(void **state) {
  (void)state;
  enum { N = 100 };
  mp_pool *p = make_pool(2, NULL);
  mp_value **in = int_inputs(N, 0);
  mp_value_free(in[40]);
  in[40] = mp_value_int(-1); /* picky refuses it */
  mp_value_free(in[70]);
  in[70] = mp_value_int(-2); /* returns 7 */
  mp_value *out[N];
  int codes[N];
  mp_map_opts o = {3, 0};
  assert_mp(MP_ETASK, mp_pool_map_ex(p, picky, INS(in), N, &o, out, codes));
  assert_non_null(strstr(mp_last_error(), "input 40: negative input -1 refused"));
  for (int i = 0; i < N; i++) {
    if (i == 40 || i == 70) {
      assert_int_equal(codes[i], MP_ETASK);
      assert_null(out[i]);
    } else {
      assert_int_equal(codes[i], 0);
      assert_int_equal(int_of(out[i]), (int64_t)i * i);
      mp_value_free(out[i]);
    }
  }
  /* Without codes, and without options: the same outputs. */
  assert_mp(MP_ETASK, mp_pool_map_ex(p, picky, INS(in), N, NULL, out, NULL));
  for (int i = 0; i < N; i++) {
    assert_true(i == 40 || i == 70 ? out[i] == NULL : int_of(out[i]) == (int64_t)i * i);
    mp_value_free(out[i]);
  }
  mp_value_free(in[40]);
  in[40] = mp_value_int(40);
  mp_value_free(in[70]);
  in[70] = mp_value_int(70);
  assert_mp_ok(mp_pool_map_ex(p, picky, INS(in), N, NULL, out, codes));
  for (int i = 0; i < N; i++) {
    assert_int_equal(codes[i], 0);
    mp_value_free(out[i]);
  }
  o.timeout_ms = -9;
  assert_mp(MP_EINVAL, mp_pool_map_ex(p, picky, INS(in), N, &o, out, codes));
  assert_mp(MP_EINVAL, mp_pool_map_ex(p, picky, INS(in), N, NULL, NULL, codes));
  free_values(in, N);
  end_pool(p);
}

/* map_ex with a timeout: what finished is kept, the rest is MP_ETIMEDOUT; tasks still in
 * the master's queue are cancelled, so the inputs may be freed at once; the pool goes on. */
static void map_ex_times_out_and_keeps_what_finished(void **state) {
  (void)state;
  enum { N = 2 + 2 * 64 + 40 }; /* two sleepers, more queued behind than workers take */
  mp_pool *p = make_pool(2, NULL);
  mp_value **in = int_inputs(N, 0);
  for (int i = 0; i < 2; i++) {
    mp_value_free(in[i]);
    in[i] = mp_value_int(2000); /* longer than the timeout on every machine */
  }
  mp_value *out[N];
  int codes[N];
  mp_map_opts o = {1, 300};
  uint64_t t0 = mp_monotonic_ns();
  assert_mp(MP_ETIMEDOUT, mp_pool_map_ex(p, sleep_or_square, INS(in), N, &o, out, codes));
  assert_true(mp_monotonic_ns() - t0 < 1900000000ull); /* it did not wait for the sleepers */
  assert_non_null(strstr(mp_last_error(), "not ready after 300 ms"));
  free_values(in, N); /* nothing of the pool reads them any more */
  int timed_out = 0;
  for (int i = 0; i < N; i++) {
    if (codes[i] == 0) {
      assert_int_equal(int_of(out[i]), (int64_t)i * i);
      mp_value_free(out[i]);
    } else {
      assert_int_equal(codes[i], MP_ETIMEDOUT);
      assert_null(out[i]);
      timed_out++;
    }
  }
  assert_int_equal(codes[0], MP_ETIMEDOUT);
  assert_int_equal(codes[1], MP_ETIMEDOUT);
  assert_int_equal(codes[N - 1], MP_ETIMEDOUT); /* cancelled: still in the master's queue */
  assert_true(timed_out >= 2 + 40);
  /* The pool is still good: this map waits behind the sleepers and succeeds. */
  mp_value **again = int_inputs(10, 0);
  assert_mp_ok(mp_pool_map(p, square, INS(again), 10, 0, out));
  for (int i = 0; i < 10; i++) {
    assert_int_equal(int_of(out[i]), (int64_t)i * i);
    mp_value_free(out[i]);
  }
  free_values(again, 10);
  end_pool(p);
}

/* mp_result_get lends the output; mp_result_take gives it away, once. */
static void result_take_gives_the_output_away(void **state) {
  (void)state;
  mp_pool *p = make_pool(1, NULL);
  mp_value *in = mp_value_int(6), *lent = NULL, *mine = NULL;
  mp_result *r;
  assert_mp_ok(mp_pool_apply_async(p, square, in, &r));
  assert_mp_ok(mp_result_get(r, &lent, 30000));
  assert_mp_ok(mp_result_take(r, &mine, 30000));
  assert_ptr_equal(lent, mine);
  assert_mp(MP_ESTATE, mp_result_take(r, &lent, 0));
  assert_null(lent);
  assert_mp(MP_ESTATE, mp_result_get(r, &lent, 0));
  assert_non_null(strstr(mp_last_error(), "taken"));
  mp_result_free(r);
  assert_int_equal(int_of(mine), 36); /* still ours after the result is freed */
  mp_value_free(mine);
  /* Taken without a place to put it: freed. A failed task's take is its error. */
  assert_mp_ok(mp_pool_apply_async(p, square, in, &r));
  assert_mp_ok(mp_result_take(r, NULL, 30000));
  mp_result_free(r);
  mp_value *neg = mp_value_int(-1);
  assert_mp_ok(mp_pool_apply_async(p, picky, neg, &r));
  assert_mp(MP_ETASK, mp_result_take(r, &mine, 30000));
  assert_null(mine);
  mp_result_free(r);
  assert_mp(MP_EINVAL, mp_result_take(NULL, &mine, 0));
  mp_value_free(neg);
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
  o.task_timeout_ms = MP_NO_LIMIT; /* named no limit and the named default are fine */
  assert_mp_ok(mp_pool_create(&p, 1, &o));
  mp_pool_free(p);
  o.task_timeout_ms = MP_DEFAULT_TIMEOUT;
  assert_mp_ok(mp_pool_create(&p, 1, &o));
  mp_pool_free(p);
  p = NULL;
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
      cmocka_unit_test(a_task_takes_a_queue_a_dict_and_a_connection),
      cmocka_unit_test(argument_tasks_behind_a_dead_worker_run_elsewhere),
      cmocka_unit_test(argument_tasks_dealt_to_an_unnoticed_dead_worker_run_elsewhere),
      cmocka_unit_test(map_ex_gives_per_item_results),
      cmocka_unit_test(map_ex_times_out_and_keeps_what_finished),
      cmocka_unit_test(result_take_gives_the_output_away),
      cmocka_unit_test(bad_arguments_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
