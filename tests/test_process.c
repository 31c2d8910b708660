/* Processes: start/join, exit codes, arguments, Pipe ends in children, lifecycle errors,
 * handle hygiene, parent death. ctest runs this file under every start method on POSIX: the
 * default (fork), then MULTIPROC_START_METHOD=spawn and =forkserver; on Windows it runs once
 * (spawn). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "connection.h"
#include "platform.h"
#include "proc.h"

#ifdef _WIN32
#  include <windows.h>
#else
#  include <fcntl.h>
#  include <signal.h>
#  include <sys/wait.h>
#  include <unistd.h>
#endif

/* ---- targets (run in children) --------------------------------------------------------- */

static int return_arg(mp_args *a) {
  int64_t v = 0;
  return mp_args_get_int(a, 0, &v) == 0 ? (int)v : 99;
}

static int crash(mp_args *a) {
  (void)a;
  mp_test_crash();
  return 0;
}

/* Blocks until the pipe end in args 0 gets a message or EOF; returns 3 if it saw EOF. */
static int wait_on_pipe(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 98;
  void *buf = NULL;
  size_t len = 0;
  int rc = mp_conn_recv(c, &buf, &len, MP_FOREVER);
  mp_free(buf);
  return rc == 0 ? 0 : 3;
}

/* Sends back its name, its parent's pid and its own pid as text. */
static int report_identity(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 98;
  char msg[256];
  snprintf(msg, sizeof msg, "%s|%lld|%lld", mp_current_process_name(), (long long)mp_getppid(),
           (long long)mp_getpid());
  return mp_conn_send(c, msg, strlen(msg)) == 0 ? 0 : 97;
}

/* Echoes every argument after the first back over the pipe end in argument 0, in order. */
static int echo_args(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 98;
  for (size_t i = 1; i < mp_args_count(a); i++) {
    char text[64];
    const void *p = text;
    size_t n = 0;
    int type = mp_args_type(a, i);
    int64_t iv = 0;
    double dv = 0;
    int bv = 0;
    const char *s = NULL;
    switch (type) {
    case MP_ARG_NIL: n = (size_t)snprintf(text, sizeof text, "nil"); break;
    case MP_ARG_BOOL:
      mp_args_get_bool(a, i, &bv);
      n = (size_t)snprintf(text, sizeof text, "bool:%d", bv);
      break;
    case MP_ARG_INT:
      mp_args_get_int(a, i, &iv);
      n = (size_t)snprintf(text, sizeof text, "int:%lld", (long long)iv);
      break;
    case MP_ARG_DOUBLE:
      mp_args_get_double(a, i, &dv);
      n = (size_t)snprintf(text, sizeof text, "double:%a", dv);
      break;
    case MP_ARG_STR: mp_args_get_str(a, i, &s, &n), p = s; break;
    case MP_ARG_BYTES: mp_args_get_bytes(a, i, &p, &n); break;
    default: return 96;
    }
    if (mp_conn_send(c, p, n) != 0)
      return 95;
  }
  return 0;
}

/* Replies "pong:<msg>" to each message until it receives "exit". */
static int ping_pong(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 98;
  for (;;) {
    void *buf = NULL;
    size_t len = 0;
    if (mp_conn_recv(c, &buf, &len, MP_FOREVER) != 0)
      return 4;
    if (len == 4 && memcmp(buf, "exit", 4) == 0) {
      mp_free(buf);
      return 0;
    }
    char reply[128];
    int n = snprintf(reply, sizeof reply, "pong:%.*s", (int)len, (char *)buf);
    mp_free(buf);
    if (mp_conn_send(c, reply, (size_t)n) != 0)
      return 5;
  }
}

/* Starts a grandchild that holds the same pipe end, reports "ready", and blocks. */
static int start_grandchild(mp_args *a) {
  mp_conn *c = NULL;
  mp_process *g = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 98;
  mp_args *ga = NULL;
  mp_args_create(&ga);
  mp_args_add_conn(ga, c);
  int rc = mp_process_create(&g, wait_on_pipe, ga, NULL);
  if (rc == 0)
    rc = mp_process_start(g);
  mp_args_free(ga);
  if (rc != 0)
    return 90;
  char msg[64];
  int n = snprintf(msg, sizeof msg, "grandchild %lld", (long long)mp_process_pid(g));
  mp_conn_send(c, msg, (size_t)n);
  return wait_on_pipe(a);
}

/* Starts a non-daemon child on the pipe end in args 0, then returns at once: the child's
 * exit must wait for that grandchild, as Python's does. */
static int start_child_and_return(mp_args *a) {
  mp_conn *c = NULL;
  mp_args *ga = NULL;
  mp_process *g = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0 || mp_args_create(&ga) != 0 || mp_args_add_conn(ga, c) != 0)
    return 90;
  int rc = mp_process_create(&g, ping_pong, ga, NULL);
  if (rc == 0)
    rc = mp_process_start(g);
  mp_args_free(ga);
  mp_process_free(g); /* still running: mp_shutdown joins it when this target returns */
  return rc == 0 ? 0 : 91;
}

/* ---- helpers ------------------------------------------------------------------------ */

static mp_process *start(mp_target_fn fn, mp_args *args) {
  mp_process *p = NULL;
  assert_mp_ok(mp_process_create(&p, fn, args, NULL));
  assert_mp_ok(mp_process_start(p));
  return p;
}

static int run_to_exit(mp_target_fn fn, mp_args *args) {
  mp_process *p = start(fn, args);
  assert_mp_ok(mp_process_join(p, 60000));
  int code = -1000;
  assert_mp_ok(mp_process_exitcode(p, &code));
  mp_process_free(p);
  return code;
}

static mp_args *args_with_int(int64_t v) {
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_int(a, v));
  return a;
}

static mp_args *args_with_conn(mp_conn *c) {
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_conn(a, c));
  return a;
}

/* Starts fn with the pipe end b as its only argument, then drops this process's copies, so
 * that the child (and whatever it starts) is b's only holder. */
static mp_process *start_sole_holder(mp_target_fn fn, mp_conn *b) {
  mp_args *args = args_with_conn(b);
  mp_process *p = start(fn, args);
  mp_args_free(args);
  mp_conn_free(b);
  return p;
}

static char *recv_text(mp_conn *c, int timeout_ms) {
  void *buf = NULL;
  size_t len = 0;
  assert_mp_ok(mp_conn_recv(c, &buf, &len, timeout_ms));
  char *s = malloc(len + 1);
  memcpy(s, buf, len);
  s[len] = '\0';
  mp_free(buf);
  return s;
}

/* ---- tests -------------------------------------------------------------------------- */

static void exit_codes_are_return_values(void **state) {
  (void)state;
  int64_t values[] = {0, 1, 7, 42, 255};
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    mp_args *a = args_with_int(values[i]);
    assert_int_equal(run_to_exit(return_arg, a), (int)values[i]);
    mp_args_free(a);
  }
}

static void a_crash_reports_minus_sigsegv(void **state) {
  (void)state;
  assert_int_equal(run_to_exit(crash, NULL), -MP_SIG_SEGV);
}

static void terminate_and_kill_report_signals(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_args *args = args_with_conn(b);
  int sigs[2] = {MP_SIG_TERM, MP_SIG_KILL};
  for (int i = 0; i < 2; i++) {
    mp_process *p = start(wait_on_pipe, args);
    assert_true(mp_process_is_alive(p));
    assert_mp(MP_ETIMEDOUT, mp_process_join(p, 50));
    assert_mp(MP_ESTATE, mp_process_exitcode(p, &(int){0}));
    assert_mp_ok(i == 0 ? mp_process_terminate(p) : mp_process_kill(p));
    assert_mp_ok(mp_process_join(p, 10000));
    assert_false(mp_process_is_alive(p));
    int code = 0;
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, -sigs[i]);
    /* Once exited (and reaped), terminate and kill are harmless no-ops. */
    assert_mp_ok(mp_process_terminate(p));
    assert_mp_ok(mp_process_kill(p));
    assert_mp_ok(mp_process_exitcode(p, &code));
    assert_int_equal(code, -sigs[i]);
    mp_process_free(p);
  }
  mp_args_free(args);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void lifecycle_errors_are_reported(void **state) {
  (void)state;
  mp_process *p = NULL;
  assert_mp(MP_EINVAL, mp_process_create(&p, NULL, NULL, NULL));
  assert_mp(MP_EINVAL, mp_process_create(NULL, return_arg, NULL, NULL));
  mp_process_opts bad;
  memset(&bad, 0, sizeof bad);
  bad.method = (mp_start_method)77;
  assert_mp(MP_EINVAL, mp_process_create(&p, return_arg, NULL, &bad));
  mp_args *a = args_with_int(5);
  assert_mp_ok(mp_process_create(&p, return_arg, a, NULL));
  mp_args_free(a); /* the process keeps its own copy */
  assert_int_equal(mp_process_pid(p), 0);
  assert_mp(MP_ESTATE, mp_process_join(p, 0));
  assert_non_null(strstr(mp_last_error(), "not started"));
  assert_mp(MP_ESTATE, mp_process_terminate(p));
  assert_mp(MP_ESTATE, mp_process_exitcode(p, &(int){0}));
  assert_false(mp_process_is_alive(p));
  assert_mp_ok(mp_process_start(p));
  assert_true(mp_process_pid(p) > 0);
  assert_mp(MP_ESTATE, mp_process_start(p));
  assert_mp_ok(mp_process_join(p, 60000));
  assert_mp_ok(mp_process_join(p, 0)); /* joining twice is fine */
  int code = 0;
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 5);
  assert_mp(MP_EINVAL, mp_process_exitcode(p, NULL));
  mp_process_free(p);
  mp_process_free(NULL);
}

static void names_and_parent_pid_reach_the_child(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_args *args = args_with_conn(b);
  mp_process_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.name = "worker-é";
  opts.daemon = 1;
  mp_process *p = NULL;
  assert_mp_ok(mp_process_create(&p, report_identity, args, &opts));
  assert_string_equal(mp_process_name(p), "worker-é");
  assert_true(mp_process_daemon(p));
  assert_mp_ok(mp_process_start(p));
  char *got = recv_text(a, 60000);
  char want[256];
  snprintf(want, sizeof want, "worker-é|%lld|%lld", (long long)mp_getpid(),
           (long long)mp_process_pid(p));
  assert_string_equal(got, want);
  free(got);
  assert_mp_ok(mp_process_join(p, 60000));
  mp_process_free(p);

  /* Default names count up like Python's Process-N. */
  mp_process *q = NULL, *r = NULL;
  assert_mp_ok(mp_process_create(&q, return_arg, NULL, NULL));
  assert_mp_ok(mp_process_create(&r, return_arg, NULL, NULL));
  int nq = 0, nr = 0;
  assert_int_equal(sscanf(mp_process_name(q), "Process-%d", &nq), 1);
  assert_int_equal(sscanf(mp_process_name(r), "Process-%d", &nr), 1);
  assert_int_equal(nr, nq + 1);
  assert_string_equal(mp_current_process_name(), "MainProcess");
  mp_process_free(q);
  mp_process_free(r);
  mp_args_free(args);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void arguments_round_trip_byte_exactly(void **state) {
  (void)state;
  enum { BIG = 1 << 20 };
  unsigned char *big = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    big[i] = (unsigned char)(i * 131 + (i >> 9));
  const unsigned char nuls[] = {0, 'a', 0, 0, 'b', 0};
  const char *utf8 = "Grüße, 世界, \xF0\x9F\x98\x80";
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_args *args = args_with_conn(b);
  assert_mp_ok(mp_args_add_nil(args));
  assert_mp_ok(mp_args_add_bool(args, 1));
  assert_mp_ok(mp_args_add_bool(args, 0));
  assert_mp_ok(mp_args_add_int(args, INT64_MIN));
  assert_mp_ok(mp_args_add_int(args, INT64_MAX));
  assert_mp_ok(mp_args_add_int(args, -1));
  assert_mp_ok(mp_args_add_double(args, -0.1));
  assert_mp_ok(mp_args_add_str(args, ""));
  assert_mp_ok(mp_args_add_str(args, utf8));
  assert_mp_ok(mp_args_add_bytes(args, NULL, 0));
  assert_mp_ok(mp_args_add_bytes(args, nuls, sizeof nuls));
  assert_mp_ok(mp_args_add_bytes(args, big, BIG));
  mp_process *p = start(echo_args, args);
  char text[64];
  const char *want_text[] = {"nil", "bool:1", "bool:0"};
  for (int i = 0; i < 3; i++) {
    char *got = recv_text(a, 60000);
    assert_string_equal(got, want_text[i]);
    free(got);
  }
  long long ints[] = {INT64_MIN, INT64_MAX, -1};
  for (int i = 0; i < 3; i++) {
    char *got = recv_text(a, 60000);
    snprintf(text, sizeof text, "int:%lld", ints[i]);
    assert_string_equal(got, text);
    free(got);
  }
  char *got = recv_text(a, 60000);
  snprintf(text, sizeof text, "double:%a", -0.1);
  assert_string_equal(got, text);
  free(got);
  const void *want[] = {"", utf8, "", nuls, big};
  size_t want_len[] = {0, strlen(utf8), 0, sizeof nuls, BIG};
  for (int i = 0; i < 5; i++) {
    void *buf = NULL;
    size_t len = 0;
    assert_mp_ok(mp_conn_recv(a, &buf, &len, 60000));
    assert_int_equal(len, want_len[i]);
    if (len)
      assert_memory_equal(buf, want[i], len);
    mp_free(buf);
  }
  assert_mp_ok(mp_process_join(p, 60000));
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  mp_args_free(args);
  mp_conn_free(a);
  mp_conn_free(b);
  free(big);
}

static void invalid_arguments_are_refused(void **state) {
  (void)state;
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp(MP_EINVAL, mp_args_add_str(a, "\xC3\x28"));     /* malformed UTF-8 */
  assert_mp(MP_EINVAL, mp_args_add_str(a, "\xED\xA0\x80")); /* a surrogate */
  assert_mp(MP_EINVAL, mp_args_add_str(a, NULL));
  assert_mp(MP_EINVAL, mp_args_add_bytes(a, NULL, 3));
  assert_mp(MP_EINVAL, mp_args_add_conn(a, NULL));
  assert_int_equal(mp_args_count(a), 0);
  assert_mp_ok(mp_args_add_int(a, 3));
  const char *s = NULL;
  assert_mp(MP_EINVAL, mp_args_get_str(a, 0, &s, NULL));
  assert_non_null(strstr(mp_last_error(), "is a int, not a str"));
  assert_mp(MP_EINVAL, mp_args_get_int(a, 1, &(int64_t){0}));
  assert_mp(MP_EINVAL, mp_args_type(a, 1));
  assert_mp(MP_EINVAL, mp_args_add_int(NULL, 1));
  mp_args_free(a);
}

static void a_pipe_end_works_both_ways_in_the_child(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_args *args = args_with_conn(b);
  mp_process *p = start(ping_pong, args);
  for (int i = 0; i < 20; i++) {
    char msg[32];
    int n = snprintf(msg, sizeof msg, "ping %d", i);
    assert_mp_ok(mp_conn_send(a, msg, (size_t)n));
    char *got = recv_text(a, 60000);
    char want[48];
    snprintf(want, sizeof want, "pong:ping %d", i);
    assert_string_equal(got, want);
    free(got);
  }
  assert_mp_ok(mp_conn_send(a, "exit", 4));
  assert_mp_ok(mp_process_join(p, 60000));
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  mp_args_free(args);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void a_killed_peer_ends_recv_with_eof(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_process *p = start_sole_holder(wait_on_pipe, b);
  assert_mp_ok(mp_process_kill(p));
  void *buf = NULL;
  size_t len = 0;
  assert_mp(MP_EEOF, mp_conn_recv(a, &buf, &len, 10000));
  assert_mp_ok(mp_process_join(p, 10000));
  mp_process_free(p);
  mp_conn_free(a);
}

static void wait_sees_exited_processes(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_args *args = args_with_conn(b);
  mp_process *blocked = start(wait_on_pipe, args);
  mp_args *ia = args_with_int(9);
  mp_process *quick = start(return_arg, ia);
  mp_waitable w[3] = {mp_waitable_process(blocked), mp_waitable_process(quick),
                      mp_waitable_conn(a)};
  int n = mp_wait(w, 3, 60000);
  assert_int_equal(n, 1);
  assert_false(w[0].ready);
  assert_true(w[1].ready);
  assert_false(w[2].ready);
  assert_mp_ok(mp_process_join(quick, 0)); /* ready means join does not block */
  assert_mp(MP_ETIMEDOUT, mp_wait(w, 1, 100));
  assert_mp_ok(mp_conn_send(a, "go", 2));
  assert_mp_ok(mp_process_join(blocked, 60000));
  mp_process_free(blocked);
  mp_process_free(quick);
  mp_args_free(args);
  mp_args_free(ia);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* Two threads start children at once; each child's pipe must see EOF exactly when its own
 * child exits, which fails if either child inherited the other's pipe end. */
typedef struct pair {
  mp_conn *mine, *theirs;
  mp_process *p;
} pair;

static void start_pair(void *arg) {
  pair *x = arg;
  assert_mp_ok(mp_pipe(&x->mine, &x->theirs, 1));
  mp_args *args = args_with_conn(x->theirs);
  x->p = start(ping_pong, args);
  mp_args_free(args);
  mp_conn_free(x->theirs);
}

static void concurrent_starts_do_not_cross_inherit(void **state) {
  (void)state;
  for (int round = 0; round < 3; round++) {
    pair x[2];
    memset(x, 0, sizeof x);
    mp_test_thread *t0 = mp_test_thread_start(start_pair, &x[0]);
    mp_test_thread *t1 = mp_test_thread_start(start_pair, &x[1]);
    mp_test_thread_join(t0);
    mp_test_thread_join(t1);
    int first = round % 2, second = 1 - first;
    assert_mp_ok(mp_conn_send(x[first].mine, "exit", 4));
    assert_mp_ok(mp_process_join(x[first].p, 60000));
    void *buf = NULL;
    size_t len = 0;
    /* Its only other holder exited: EOF now, though the other child still runs. */
    assert_mp(MP_EEOF, mp_conn_recv(x[first].mine, &buf, &len, 10000));
    assert_true(mp_process_is_alive(x[second].p));
    assert_mp(MP_ETIMEDOUT, mp_conn_recv(x[second].mine, &buf, &len, 50));
    assert_mp_ok(mp_conn_send(x[second].mine, "exit", 4));
    assert_mp_ok(mp_process_join(x[second].p, 60000));
    assert_mp(MP_EEOF, mp_conn_recv(x[second].mine, &buf, &len, 10000));
    for (int i = 0; i < 2; i++) {
      mp_process_free(x[i].p);
      mp_conn_free(x[i].mine);
    }
  }
}

static void many_processes_leak_no_handles(void **state) {
  (void)state;
  /* Warm up: the first start creates lasting state (forker thread, job object). */
  mp_args *a = args_with_int(1);
  assert_int_equal(run_to_exit(return_arg, a), 1);
  int before = mp_test_open_handles();
  for (int i = 0; i < 100; i++) {
    mp_process *p = start(return_arg, a);
    assert_mp_ok(mp_process_join(p, 60000));
    mp_process_free(p);
  }
  int after = mp_test_open_handles();
  assert_int_equal(after, before);
  mp_args_free(a);
}

/* A child started from a thread that then exits keeps running: the parent-death
 * mechanism follows the process, not the starting thread. */
typedef struct starter {
  mp_conn *theirs;
  mp_process *p;
} starter;

static void start_and_exit(void *arg) {
  starter *s = arg;
  mp_args *args = args_with_conn(s->theirs);
  s->p = start(ping_pong, args);
  mp_args_free(args);
}

static void a_child_outlives_the_thread_that_started_it(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  starter s = {b, NULL};
  mp_test_thread_join(mp_test_thread_start(start_and_exit, &s));
  for (int i = 0; i < 3; i++) {
    assert_mp_ok(mp_conn_send(a, "x", 1));
    char *got = recv_text(a, 60000);
    assert_string_equal(got, "pong:x");
    free(got);
    assert_mp(MP_ETIMEDOUT, mp_process_join(s.p, 100));
  }
  assert_mp_ok(mp_conn_send(a, "exit", 4));
  assert_mp_ok(mp_process_join(s.p, 60000));
  mp_process_free(s.p);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* Children started one after another from a thread that stays busy all the while: each runs
 * its own target. (A fork child's glibc hands the requesting thread's stack to the first
 * thread the child makes; a start request kept there was once overwritten that way.) */
typedef struct serial_starts {
  int n, ok;
} serial_starts;

static void start_serially(void *arg) {
  serial_starts *s = arg;
  for (int i = 0; i < s->n; i++) {
    mp_args *a = args_with_int(10 + i % 50);
    mp_process *p = start(return_arg, a);
    int code = -1;
    if (mp_process_join(p, 60000) == 0 && mp_process_exitcode(p, &code) == 0 && code == 10 + i % 50)
      s->ok++;
    mp_process_free(p);
    mp_args_free(a);
  }
}

static void children_started_from_another_thread_run_their_targets(void **state) {
  (void)state;
#ifdef _WIN32
  serial_starts s = {3, 0}; /* a spawn costs ~100 ms under Wine */
#else
  serial_starts s = {40, 0};
#endif
  serial_starts warm = {1, 0}; /* the library's own threads first, the requester after them */
  start_serially(&warm);
  assert_int_equal(warm.ok, 1);
  mp_test_thread_join(mp_test_thread_start(start_serially, &s));
  assert_int_equal(s.ok, s.n);
}

/* Kill a child that started a grandchild: the grandchild must be gone within 2 s, which
 * the test sees as EOF on a pipe that only the grandchild still holds. */
static void a_killed_parent_leaves_no_children(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_process *child = start_sole_holder(start_grandchild, b);
  char *got = recv_text(a, 60000);
  assert_non_null(strstr(got, "grandchild "));
  free(got);
  assert_mp_ok(mp_process_kill(child));
  assert_mp_ok(mp_process_join(child, 10000));
  uint64_t t0 = mp_monotonic_ns();
  void *buf = NULL;
  size_t len = 0;
  assert_mp(MP_EEOF, mp_conn_recv(a, &buf, &len, 2000));
  assert_true(mp_monotonic_ns() - t0 < 2000000000u);
  mp_process_free(child);
  mp_conn_free(a);
}

static void a_child_joins_its_own_children_before_exiting(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_process *p = start_sole_holder(start_child_and_return, b);
  /* The grandchild answers, and its parent has not exited: it is waiting for it. */
  assert_mp_ok(mp_conn_send(a, "x", 1));
  char *got = recv_text(a, 60000);
  assert_string_equal(got, "pong:x");
  free(got);
  assert_mp(MP_ETIMEDOUT, mp_process_join(p, 300));
  assert_mp_ok(mp_conn_send(a, "exit", 4));
  assert_mp_ok(mp_process_join(p, 60000));
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  mp_conn_free(a);
}

static void a_target_in_a_shared_library_runs(void **state) {
  (void)state;
  /* The C library's getpid (kernel32's GetCurrentProcessId on Windows) ignores its
   * argument and returns the child's pid: it travels as (library path, offset). */
#ifdef _WIN32
  mp_target_fn fn = (mp_target_fn)(void (*)(void))GetCurrentProcessId;
#else
  mp_target_fn fn = (mp_target_fn)(void (*)(void))getpid;
#endif
  mp_process *p = start(fn, NULL);
  int64_t pid = mp_process_pid(p);
  assert_mp_ok(mp_process_join(p, 60000));
  int code = 0;
  assert_mp_ok(mp_process_exitcode(p, &code));
#ifdef _WIN32
  assert_int_equal(code, (int)pid);
#else
  assert_int_equal(code, (int)(pid & 0xff));
#endif
  mp_process_free(p);
}

static void target_references_are_checked(void **state) {
  (void)state;
  mp_plat_target t;
  static int data_not_code;
  assert_mp(MP_EINVAL, mp_plat_target_ref((void (*)(void))(uintptr_t)&data_not_code, &t));
  assert_mp_ok(mp_plat_target_ref((void (*)(void))return_arg, &t));
  assert_string_equal(t.module, "");
  void (*fn)(void) = NULL;
  assert_mp_ok(mp_plat_target_resolve(&t, &fn));
  assert_ptr_equal(fn, (void (*)(void))return_arg);
  mp_plat_target bad = t;
  bad.fingerprint[bad.fingerprint_len - 1] ^= 0x5a;
  assert_mp(MP_ECHILD, mp_plat_target_resolve(&bad, &fn));
  assert_non_null(strstr(mp_last_error(), "fingerprint mismatch"));
  bad = t;
  bad.offset = (uint64_t)1 << 40;
  assert_mp(MP_ECHILD, mp_plat_target_resolve(&bad, &fn));
  assert_non_null(strstr(mp_last_error(), "outside the code"));
}

static void start_methods_are_validated(void **state) {
  (void)state;
  mp_start_method m = mp_get_start_method();
#ifdef _WIN32
  assert_int_equal(m, MP_START_SPAWN);
  assert_mp(MP_EINVAL, mp_set_start_method(MP_START_FORK));
  assert_non_null(strstr(mp_last_error(), "fork"));
  mp_process_opts o;
  memset(&o, 0, sizeof o);
  o.method = MP_START_FORK;
  mp_process *p = NULL;
  assert_mp(MP_EINVAL, mp_process_create(&p, return_arg, NULL, &o));
  assert_null(p);
  /* No fork, so no fork server: refused as not supported, with what to use instead. */
  assert_mp(MP_ENOTSUP, mp_set_start_method(MP_START_FORKSERVER));
  assert_non_null(strstr(mp_last_error(), "forkserver start method needs fork()"));
  assert_non_null(strstr(mp_last_error(), "MP_START_SPAWN"));
  o.method = MP_START_FORKSERVER;
  assert_mp(MP_ENOTSUP, mp_process_create(&p, return_arg, NULL, &o));
  assert_null(p);
  assert_mp(MP_ENOTSUP, mp_set_forkserver_preload(NULL));
  mp_pool *pool = NULL;
  mp_pool_opts po;
  memset(&po, 0, sizeof po);
  po.method = MP_START_FORKSERVER;
  assert_mp(MP_ENOTSUP, mp_pool_create(&pool, 1, &po));
  assert_null(pool);
#else
  const char *forced = getenv("MULTIPROC_START_METHOD");
  mp_start_method want = MP_START_FORK;
  if (forced && strcmp(forced, "spawn") == 0)
    want = MP_START_SPAWN;
  else if (forced && strcmp(forced, "forkserver") == 0)
    want = MP_START_FORKSERVER;
  assert_int_equal(m, want);
  assert_mp_ok(mp_set_start_method(MP_START_FORK));
  assert_mp_ok(mp_set_start_method(MP_START_FORKSERVER));
#endif
  assert_mp(MP_EINVAL, mp_set_start_method((mp_start_method)9));
  assert_mp_ok(mp_set_start_method(MP_START_DEFAULT));
  assert_int_equal(mp_get_start_method(), m);
}

/* ---- what a child receives (bugs: a 64-handle cap under fork, swallowed export errors,
 * passed handles left inheritable in a spawned child) -------------------------------------- */

#define NPIPES 100

static int answer_on_every_pipe(mp_args *a) {
  for (size_t i = 0; i < NPIPES; i++) {
    mp_conn *c = NULL;
    if (mp_args_get_conn(a, i, &c) != 0)
      return 1;
    char msg[16];
    snprintf(msg, sizeof msg, "%zu", i);
    if (mp_conn_send(c, msg, strlen(msg)) != 0)
      return 2;
  }
  return 0;
}

static void more_than_64_handles_reach_the_child(void **state) {
  (void)state;
  mp_conn *mine[NPIPES], *theirs[NPIPES];
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  for (int i = 0; i < NPIPES; i++) {
    assert_mp_ok(mp_pipe(&mine[i], &theirs[i], 1));
    assert_mp_ok(mp_args_add_conn(a, theirs[i]));
  }
  mp_process *p = start(answer_on_every_pipe, a);
  for (int i = 0; i < NPIPES; i++) {
    char want[16];
    snprintf(want, sizeof want, "%d", i);
    char *got = recv_text(mine[i], 60000);
    assert_string_equal(got, want);
    free(got);
  }
  assert_mp_ok(mp_process_join(p, 60000));
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  mp_args_free(a);
  for (int i = 0; i < NPIPES; i++) {
    mp_conn_free(mine[i]);
    mp_conn_free(theirs[i]);
  }
}

static int never_runs(mp_args *a) {
  (void)a;
  return 99;
}

static void an_object_that_cannot_travel_fails_the_start(void **state) {
  (void)state;
  mp_conn *x, *y;
  assert_mp_ok(mp_pipe(&x, &y, 1));
  mp_args *a = args_with_conn(y);
  assert_mp_ok(mp_conn_close(y));
  mp_process *p = NULL;
  assert_mp_ok(mp_process_create(&p, never_runs, a, NULL));
  int rc = mp_process_start(p);
  assert_true(rc < 0); /* under fork too: no child that silently lacks its handles */
  assert_int_equal(mp_process_pid(p), 0);
  mp_process_free(p);
  mp_args_free(a);
  mp_conn_free(x);
  mp_conn_free(y);
}

/* 0 if the connection's handle would not pass to a program the child starts. */
static int handle_is_private(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 2;
  mp_plat_handle h = mp_plat_chan_handle(mp__conn_chan(c));
#ifdef _WIN32
  DWORD flags = 0;
  if (!GetHandleInformation((HANDLE)h, &flags))
    return 3;
  return (flags & HANDLE_FLAG_INHERIT) ? 1 : 0;
#else
  int fl = fcntl((int)h, F_GETFD);
  return fl < 0 ? 3 : (fl & FD_CLOEXEC) ? 0 : 1;
#endif
}

static void passed_handles_do_not_leak_into_what_the_child_runs(void **state) {
  (void)state;
  mp_conn *x, *y;
  assert_mp_ok(mp_pipe(&x, &y, 1));
  mp_args *a = args_with_conn(y);
  assert_int_equal(run_to_exit(handle_is_private, a), 0);
  mp_args_free(a);
  mp_conn_free(x);
  mp_conn_free(y);
}

/* ---- child mode only where it belongs (bug: a marker anywhere in argv was obeyed) --------- */

static void run_self(const char *const *extra, mp_run_result *r) {
  char self[4096];
  assert_mp_ok(mp_plat_self_exe(self, sizeof self));
  const char *argv[8] = {self};
  for (int i = 0; extra[i]; i++)
    argv[i + 1] = extra[i];
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.std_out.mode = o.std_err.mode = MP_STDIO_PIPE;
  o.std_in.mode = MP_STDIO_PIPE;
  assert_mp_ok(mp_run(argv, &o, r));
}

static void a_marker_elsewhere_is_an_ordinary_argument(void **state) {
  (void)state;
  char marker[96];
  snprintf(marker, sizeof marker, "--multiproc-child=%lld:3:1", (long long)mp_getpid());
  const char *extra[] = {"--probe-init", marker, NULL};
  mp_run_result r;
  run_self(extra, &r);
  assert_int_equal(r.returncode, 0);
  assert_non_null(strstr(r.out, "main ran"));
  mp_run_result_free(&r);
}

static void a_bootstrap_not_from_the_parent_is_refused(void **state) {
  (void)state;
  /* A live process that is not the child's creator claims to be its parent. */
  mp_popen *other;
  const char *argv[] = {mp_test_child_program(), "sleep", "60000", NULL};
  assert_mp_ok(mp_popen_create(&other, argv, NULL));
  char marker[96];
  snprintf(marker, sizeof marker, "--multiproc-child=%lld:3:1", (long long)mp_popen_pid(other));
  const char *extra[] = {marker, NULL};
  mp_run_result r;
  run_self(extra, &r);
  assert_int_equal(r.returncode, 120);
  assert_non_null(strstr(r.err, "bootstrap:"));
  mp_run_result_free(&r);
  /* The real parent, but the handle is not a channel from it. */
  snprintf(marker, sizeof marker, "--multiproc-child=%lld:0:1", (long long)mp_getpid());
  run_self(extra, &r);
  assert_int_equal(r.returncode, 120);
  assert_non_null(strstr(r.err, "bootstrap"));
  mp_run_result_free(&r);
  mp_popen_kill(other);
  mp_popen_free(other);
}

/* A process freed while it runs is joined by mp_shutdown, and a freed daemon is terminated
 * first: mp_shutdown returns, both children have ended (the pipe ends they alone held read
 * end of file at once) and, on POSIX, both are reaped. */
static void mp_shutdown_joins_freed_processes(void **state) {
  (void)state;
  mp_conn *a, *b, *da, *db;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_mp_ok(mp_pipe(&da, &db, 1));
  mp_process *p = start_sole_holder(wait_on_pipe, b);
  mp_process_opts o = {0};
  o.daemon = 1;
  mp_process *d = NULL;
  mp_args *args = args_with_conn(db);
  assert_mp_ok(mp_process_create(&d, wait_on_pipe, args, &o));
  assert_mp_ok(mp_process_start(d));
  mp_args_free(args);
  mp_conn_free(db);
  int64_t pids[2] = {mp_process_pid(p), mp_process_pid(d)};
  mp_process_free(p);
  mp_process_free(d);
  assert_mp_ok(mp_conn_send(a, "go", 2));
  mp_shutdown();
  mp_conn *ends[2] = {a, da};
  for (int i = 0; i < 2; i++) {
    void *buf = NULL;
    size_t len = 0;
    int rc = mp_conn_recv(ends[i], &buf, &len, 0);
    assert_true(rc == MP_EEOF || rc == MP_EBROKEN);
    mp_conn_free(ends[i]);
#ifndef _WIN32
    assert_int_equal(waitpid((pid_t)pids[i], NULL, WNOHANG), -1); /* reaped: not ours any more */
#endif
  }
  (void)pids;
}

/* The call a spawned child decodes (hostile bytes, fuzzed too): anything cut short, too many
 * handles or too long a name is MP_EPROTO. */
static void the_bootstrap_call_is_checked(void **state) {
  (void)state;
  const unsigned char call[] = {0, 2, 'f', 'n', 0, 3, 'a', 'b', 'c', 0,
                                1, 0, 0,   0,   0, 0, 0,   0,   5,   'x'};
  assert_mp_ok(mp__boot_check_call(call, sizeof call));
  for (size_t n = 0; n < sizeof call - 1; n++)
    assert_int_equal(mp__boot_check_call(call, n), MP_EPROTO);
  const unsigned char many[] = {0, 0, 0, 0, 1, 1}; /* 257 handles */
  assert_int_equal(mp__boot_check_call(many, sizeof many), MP_EPROTO);
  unsigned char name[2 + 2 + 200 + 2];
  memset(name, 'n', sizeof name);
  name[0] = name[1] = 0, name[2] = 0, name[3] = 200, name[204] = name[205] = 0;
  assert_int_equal(mp__boot_check_call(name, sizeof name), MP_EPROTO);
  name[3] = 127, name[131] = name[132] = 0; /* the longest name a child keeps */
  assert_mp_ok(mp__boot_check_call(name, 2 + 2 + 127 + 2));
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--probe-init") == 0) {
    mp_init(&argc, &argv); /* must not take the marker in argv[2] for its own */
    printf("main ran\n");
    return 0;
  }
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(exit_codes_are_return_values),
      cmocka_unit_test(a_crash_reports_minus_sigsegv),
      cmocka_unit_test(terminate_and_kill_report_signals),
      cmocka_unit_test(lifecycle_errors_are_reported),
      cmocka_unit_test(names_and_parent_pid_reach_the_child),
      cmocka_unit_test(arguments_round_trip_byte_exactly),
      cmocka_unit_test(invalid_arguments_are_refused),
      cmocka_unit_test(a_pipe_end_works_both_ways_in_the_child),
      cmocka_unit_test(a_killed_peer_ends_recv_with_eof),
      cmocka_unit_test(wait_sees_exited_processes),
      cmocka_unit_test(concurrent_starts_do_not_cross_inherit),
      cmocka_unit_test(many_processes_leak_no_handles),
      cmocka_unit_test(a_child_outlives_the_thread_that_started_it),
      cmocka_unit_test(children_started_from_another_thread_run_their_targets),
      cmocka_unit_test(a_killed_parent_leaves_no_children),
      cmocka_unit_test(a_child_joins_its_own_children_before_exiting),
      cmocka_unit_test(a_target_in_a_shared_library_runs),
      cmocka_unit_test(target_references_are_checked),
      cmocka_unit_test(start_methods_are_validated),
      cmocka_unit_test(more_than_64_handles_reach_the_child),
      cmocka_unit_test(an_object_that_cannot_travel_fails_the_start),
      cmocka_unit_test(passed_handles_do_not_leak_into_what_the_child_runs),
      cmocka_unit_test(a_marker_elsewhere_is_an_ordinary_argument),
      cmocka_unit_test(a_bootstrap_not_from_the_parent_is_refused),
      cmocka_unit_test(the_bootstrap_call_is_checked),
      cmocka_unit_test(mp_shutdown_joins_freed_processes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
