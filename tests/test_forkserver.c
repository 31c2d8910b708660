/* The forkserver start method (POSIX): the preload runs once, in the server, before any
 * child; children are forked from the server's clean state, so a parent whose threads hold
 * locks starts them safely (the case fork cannot handle); a killed or hung server is
 * replaced; children die with the process that asked for them; stdio and the working
 * directory come from the requester as they are at the start; exit codes and signals read
 * as under the other methods. Every other process and pool test runs under forkserver too
 * (tests/CMakeLists.txt). This file picks each case's start method itself, so it runs once:
 * MULTIPROC_START_METHOD would override those choices. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* ---- the preload and what children report ------------------------------------------------ */

static int preload_runs;    /* in the server: how often the preload ran there */
static int64_t preload_pid; /* the process it ran in */
static int failing_preload_code = 3;

static int preload(void) {
  preload_runs++;
  preload_pid = mp_getpid();
  return 0;
}

static int failing_preload(void) { return failing_preload_code; }

/* A process object for fn(args) under m; start_timeout_ms 0: the default. */
static mp_process *create_with(mp_start_method m, mp_target_fn fn, mp_args *args, int detached,
                               int start_timeout_ms) {
  mp_process_opts o;
  memset(&o, 0, sizeof o);
  o.method = m;
  o.detached = detached;
  o.start_timeout_ms = start_timeout_ms;
  mp_process *p = NULL;
  assert_mp_ok(mp_process_create(&p, fn, args, &o));
  return p;
}

static mp_process *start_with(mp_start_method m, mp_target_fn fn, mp_args *args, int detached) {
  mp_process *p = create_with(m, fn, args, detached, 0);
  assert_mp_ok(mp_process_start(p));
  return p;
}

static mp_args *args_with_conn(mp_conn *c) {
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_conn(a, c));
  return a;
}

static int join_code(mp_process *p) {
  int code = -1000;
  assert_mp_ok(mp_process_join(p, 60000));
  assert_mp_ok(mp_process_exitcode(p, &code));
  return code;
}

static char *recv_text(mp_conn *c) {
  void *buf = NULL;
  size_t len = 0;
  assert_mp_ok(mp_conn_recv(c, &buf, &len, 60000));
  char *s = malloc(len + 1);
  memcpy(s, buf, len);
  s[len] = '\0';
  mp_free(buf);
  return s;
}

static int send_text(mp_conn *c, const char *s) { return mp_conn_send(c, s, strlen(s)); }

/* Sends "<preload runs> <preload's pid> <OS parent> <mp_getppid>" and waits for a message
 * (or end of file) before it returns. */
static int report_server(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 98;
  char msg[128];
  snprintf(msg, sizeof msg, "%d %lld %lld %lld", preload_runs, (long long)preload_pid,
           (long long)getppid(), (long long)mp_getppid());
  if (send_text(c, msg) != 0)
    return 97;
  void *buf = NULL;
  size_t len = 0;
  int rc = mp_conn_recv(c, &buf, &len, MP_FOREVER);
  mp_free(buf);
  return rc == 0 ? 0 : 3;
}

typedef struct report {
  int runs;
  long long preload_pid, os_parent, mp_parent;
} report;

static report read_report(mp_conn *c) {
  report r;
  char *s = recv_text(c);
  assert_int_equal(
      sscanf(s, "%d %lld %lld %lld", &r.runs, &r.preload_pid, &r.os_parent, &r.mp_parent), 4);
  free(s);
  return r;
}

/* A forkserver child that reports, and the pipe end to talk to it. */
typedef struct served {
  mp_process *p;
  mp_conn *mine;
  report r;
} served;

static served start_reporter(void) {
  served s;
  mp_conn *theirs;
  assert_mp_ok(mp_pipe(&s.mine, &theirs, 1));
  mp_args *a = args_with_conn(theirs);
  s.p = start_with(MP_START_FORKSERVER, report_server, a, 0);
  mp_args_free(a);
  mp_conn_free(theirs); /* the child holds the only other copy */
  s.r = read_report(s.mine);
  return s;
}

static void finish_reporter(served *s) {
  assert_mp_ok(send_text(s->mine, "bye"));
  assert_int_equal(join_code(s->p), 0);
  mp_process_free(s->p);
  mp_conn_free(s->mine);
}

/* ---- preload ------------------------------------------------------------------------------ */

static void the_preload_runs_once_in_the_server_before_any_child(void **state) {
  (void)state;
  served s[3];
  for (int i = 0; i < 3; i++) {
    s[i] = start_reporter();
    assert_int_equal(s[i].r.runs, 1);                           /* once, however many children */
    assert_int_equal(s[i].r.preload_pid, s[i].r.os_parent);     /* in the server, their parent */
    assert_int_equal(s[i].r.mp_parent, (long long)mp_getpid()); /* the parent they serve: us */
    assert_int_equal(s[i].r.os_parent, s[0].r.os_parent);       /* one server for them all */
  }
  assert_true(s[0].r.os_parent != (long long)mp_getpid());
  assert_int_equal(preload_runs, 0); /* never here */
  for (int i = 0; i < 3; i++)
    finish_reporter(&s[i]);
  /* Named while the server runs: refused, the running server keeps its preload. */
  assert_mp(MP_ESTATE, mp_set_forkserver_preload(failing_preload));
  assert_non_null(strstr(mp_last_error(), "runs already"));
}

static void a_failing_preload_keeps_the_server_from_starting(void **state) {
  (void)state;
  served before = start_reporter();
  finish_reporter(&before);
  mp_shutdown(); /* stops the server: the next start starts a new one */
  assert_mp_ok(mp_set_forkserver_preload(failing_preload));
  mp_process *p = create_with(MP_START_FORKSERVER, report_server, NULL, 0, 0);
  assert_mp(MP_ECHILD, mp_process_start(p));
  assert_non_null(strstr(mp_last_error(), "cannot start the fork server"));
  assert_non_null(strstr(mp_last_error(), "preload function returned 3"));
  assert_int_equal(mp_process_pid(p), 0);
  mp_process_free(p);
  /* A good preload again: the next start works, in a new server where it ran once. */
  assert_mp_ok(mp_set_forkserver_preload(preload));
  served after = start_reporter();
  assert_int_equal(after.r.runs, 1);
  assert_true(after.r.os_parent != before.r.os_parent);
  finish_reporter(&after);
}

/* ---- the server's death ------------------------------------------------------------------- */

static void a_killed_server_takes_its_children_and_is_replaced(void **state) {
  (void)state;
  served s = start_reporter();
  pid_t server = (pid_t)s.r.os_parent;
  assert_int_equal(kill(server, SIGKILL), 0);
  /* Its child dies with it; nobody is left to report its status: it reads as killed. */
  assert_int_equal(join_code(s.p), -SIGKILL);
  void *buf = NULL;
  size_t len = 0;
  assert_mp(MP_EEOF, mp_conn_recv(s.mine, &buf, &len, 10000)); /* it is really gone */
  mp_process_free(s.p);
  mp_conn_free(s.mine);
  /* The next start finds the server gone and starts a new one, which preloads again. */
  served next = start_reporter();
  assert_true(next.r.os_parent != (long long)server);
  assert_int_equal(next.r.runs, 1);
  finish_reporter(&next);
}

static void a_server_that_does_not_answer_is_replaced(void **state) {
  (void)state;
  served s = start_reporter();
  pid_t server = (pid_t)s.r.os_parent;
  finish_reporter(&s);
  assert_int_equal(kill(server, SIGSTOP), 0);
  mp_process *p = create_with(MP_START_FORKSERVER, report_server, NULL, 0, 300);
  assert_mp(MP_ECHILD, mp_process_start(p));
  assert_non_null(strstr(mp_last_error(), "did not answer within 300 ms"));
  mp_process_free(p);
  /* The stopped server was killed and reaped (it was our child): its pid is free. */
  assert_int_equal(kill(server, 0), -1);
  assert_int_equal(errno, ESRCH);
  served next = start_reporter();
  assert_true(next.r.os_parent != (long long)server);
  finish_reporter(&next);
}

/* ---- random kills while children start (chaos) ------------------------------------------ */

static int quick(mp_args *a) {
  (void)a;
  return 0;
}

typedef struct killer {
  pid_t server;
  unsigned delay_us;
} killer;

static void *kill_after(void *arg) {
  killer *k = arg;
  usleep(k->delay_us);
  kill(k->server, SIGKILL);
  return NULL;
}

/* The server is killed at a random moment while children are being started: every start
 * succeeds or fails with MP_ECHILD naming the cause, every started child is joined within
 * its bound (exit 0, or killed with the server), and the next start has a new server.
 * Each start is bounded by start_timeout_ms and each join by its timeout: a hang fails. */
static void random_server_kills_never_hang(void **state) {
  (void)state;
  enum { TRIALS = 30, STARTS = 4 };
  const char *env = getenv("MP_TEST_SEED");
  unsigned seed =
      env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
  print_message("random_server_kills_never_hang: MP_TEST_SEED=%u\n", seed);
  int started = 0, refused = 0, killed = 0;
  for (int trial = 0; trial < TRIALS; trial++) {
    served s = start_reporter(); /* a working server, new after the last trial's kill */
    pid_t server = (pid_t)s.r.os_parent;
    finish_reporter(&s);
    killer k = {server, (unsigned)rand_r(&seed) % 6000u};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, kill_after, &k), 0);
    for (int i = 0; i < STARTS; i++) {
      mp_process *p = create_with(MP_START_FORKSERVER, quick, NULL, 0, 5000);
      int rc = mp_process_start(p);
      if (rc != 0) {
        if (rc != MP_ECHILD)
          fail_msg("trial %d start %d: %d (%s), want 0 or MP_ECHILD", trial, i, rc,
                   mp_last_error());
        assert_true(strlen(mp_last_error()) > 10);
        if (refused++ == 0)
          print_message("random_server_kills_never_hang: first refusal: %s\n", mp_last_error());
      } else {
        started++;
        int code = join_code(p);
        if (code != 0 && code != -SIGKILL)
          fail_msg("trial %d start %d: exit code %d", trial, i, code);
        killed += code == -SIGKILL;
      }
      mp_process_free(p);
    }
    assert_int_equal(pthread_join(t, NULL), 0);
  }
  served after = start_reporter();
  finish_reporter(&after);
  print_message("random_server_kills_never_hang: %d started (%d killed with their server), %d "
                "refused\n",
                started, killed, refused);
  assert_true(started > 0);
}

/* Too many handles for a child: refused before anything reaches the server, which stays
 * usable. */
static void too_many_handles_are_refused_and_the_server_stays(void **state) {
  (void)state;
  enum { N = 300 };
  mp_conn *mine[N], *theirs[N];
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  for (int i = 0; i < N; i++) {
    assert_mp_ok(mp_pipe(&mine[i], &theirs[i], 1));
    assert_mp_ok(mp_args_add_conn(a, theirs[i]));
  }
  mp_process *p = create_with(MP_START_FORKSERVER, quick, a, 0, 0);
  assert_mp(MP_EINVAL, mp_process_start(p));
  print_message("too many handles: %s\n", mp_last_error());
  mp_process_free(p);
  mp_args_free(a);
  for (int i = 0; i < N; i++) {
    mp_conn_free(mine[i]);
    mp_conn_free(theirs[i]);
  }
  served s = start_reporter();
  finish_reporter(&s);
}

/* ---- dying with the requester ------------------------------------------------------------- */

/* Blocks on the pipe end in args 0 until a message comes (then answers it and returns when
 * it says "exit") or end of file. */
static int ping_until_exit(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 98;
  for (;;) {
    void *buf = NULL;
    size_t len = 0;
    if (mp_conn_recv(c, &buf, &len, MP_FOREVER) != 0)
      return 3;
    int last = len == 4 && memcmp(buf, "exit", 4) == 0;
    mp_free(buf);
    char pong[32]; /* with its OS parent: the fork server while that lives */
    snprintf(pong, sizeof pong, "pong %lld", (long long)getppid());
    if (last || send_text(c, pong) != 0)
      return 0;
  }
}

/* The requester: starts, through its own fork server, a child on each pipe end (the second
 * detached), says "ready" on the first, and waits to be killed. */
static int requester(mp_args *a) {
  mp_conn *c[2] = {NULL, NULL};
  if (mp_args_get_conn(a, 0, &c[0]) != 0 || mp_args_get_conn(a, 1, &c[1]) != 0)
    return 98;
  for (int i = 0; i < 2; i++) {
    mp_args *ga = NULL;
    mp_process_opts o;
    memset(&o, 0, sizeof o);
    o.method = MP_START_FORKSERVER;
    o.detached = i == 1;
    mp_process *g = NULL;
    if (mp_args_create(&ga) != 0 || mp_args_add_conn(ga, c[i]) != 0 ||
        mp_process_create(&g, ping_until_exit, ga, &o) != 0 || mp_process_start(g) != 0)
      return 90 + i;
    mp_args_free(ga);
  }
  if (send_text(c[0], "ready") != 0)
    return 92;
  mp_sleep_ms(600000);
  return 0;
}

/* The requester is started by method: spawned, or forked (then it inherits this process's
 * fork server state and must start a server of its own). */
static void children_die_with_the_requester(mp_start_method method) {
  mp_conn *mine[2], *theirs[2];
  mp_args *a = NULL;
  assert_mp_ok(mp_args_create(&a));
  for (int i = 0; i < 2; i++) {
    assert_mp_ok(mp_pipe(&mine[i], &theirs[i], 1));
    assert_mp_ok(mp_args_add_conn(a, theirs[i]));
  }
  mp_process *r = start_with(method, requester, a, 0);
  mp_args_free(a);
  for (int i = 0; i < 2; i++)
    mp_conn_free(theirs[i]);
  char *ready = recv_text(mine[0]);
  assert_string_equal(ready, "ready");
  free(ready);
  /* The requester's fork server: the parent of its detached child, for now. */
  assert_mp_ok(send_text(mine[1], "ping"));
  char *pong = recv_text(mine[1]);
  long long server = 0;
  assert_int_equal(sscanf(pong, "pong %lld", &server), 1);
  free(pong);
  assert_true(server > 1 && server != (long long)mp_getpid());
  assert_mp_ok(mp_process_kill(r));
  assert_int_equal(join_code(r), -SIGKILL);
  /* Its own child held the first pipe's other end: it died with it (end of file)... */
  void *buf = NULL;
  size_t len = 0;
  assert_mp(MP_EEOF, mp_conn_recv(mine[0], &buf, &len, 10000));
  /* ...while the detached one lives on, and answers. */
  assert_mp_ok(send_text(mine[1], "ping"));
  pong = recv_text(mine[1]);
  assert_int_equal(strncmp(pong, "pong ", 5), 0);
  free(pong);
  assert_mp_ok(send_text(mine[1], "exit"));
  /* And the server died with its client, within a bound. */
  int gone = 0;
  for (int waited = 0; !gone && waited < 20000; waited += 10) {
    gone = !mp_test_process_alive(server);
    if (!gone)
      mp_sleep_ms(10);
  }
  assert_true(gone);
  assert_mp(MP_EEOF, mp_conn_recv(mine[1], &buf, &len, 10000));
  mp_process_free(r);
  for (int i = 0; i < 2; i++)
    mp_conn_free(mine[i]);
}

static void children_die_with_a_spawned_requester(void **state) {
  (void)state;
  children_die_with_the_requester(MP_START_SPAWN);
}

/* ThreadSanitizer cannot run a fork child of a threaded process that starts threads (ours
 * has the forker thread): there the forked requester is left to the other legs. */
#if defined(__SANITIZE_THREAD__)
#  define MP_TEST_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define MP_TEST_TSAN 1
#  endif
#endif

static void children_die_with_a_forked_requester(void **state) {
  (void)state;
#ifdef MP_TEST_TSAN
  skip();
#else
  children_die_with_the_requester(MP_START_FORK);
#endif
}

/* ---- threads holding locks while children start ----------------------------------------- */

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;   /* held by a thread throughout */
static pthread_mutex_t shared = PTHREAD_MUTEX_INITIALIZER; /* taken and left all the time */

/* 0 if the calling process could take `held`, 1 if it is locked (for good in a fork child:
 * the thread that holds it does not exist there). */
static int try_held(mp_args *a) {
  (void)a;
  if (pthread_mutex_trylock(&held) != 0)
    return 1;
  pthread_mutex_unlock(&held);
  return 0;
}

/* What the busy threads do too: allocate, format, write through stdio, take `shared`. */
static int use_locks(mp_args *a) {
  (void)a;
  FILE *f = fopen("/dev/null", "w");
  if (f == NULL)
    return 2;
  for (int i = 0; i < 50; i++) {
    char *p = malloc((size_t)(16 + i * 100));
    pthread_mutex_lock(&shared);
    fprintf(f, "%d %s %p\n", i, getenv("PATH") ? "path" : "none", (void *)p);
    pthread_mutex_unlock(&shared);
    free(p);
  }
  fclose(f);
  return 0;
}

typedef struct busy {
  int stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int holding;
} busy;

static void *hold_lock(void *arg) {
  busy *b = arg;
  pthread_mutex_lock(&held);
  pthread_mutex_lock(&b->mu);
  b->holding = 1;
  pthread_cond_broadcast(&b->cv);
  while (!b->stop)
    pthread_cond_wait(&b->cv, &b->mu);
  pthread_mutex_unlock(&b->mu);
  pthread_mutex_unlock(&held);
  return NULL;
}

static void *churn(void *arg) {
  busy *b = arg;
  FILE *f = fopen("/dev/null", "w");
  for (unsigned i = 0; !__atomic_load_n(&b->stop, __ATOMIC_RELAXED); i++) {
    char *p = malloc(32 + (i % 4096));
    pthread_mutex_lock(&shared);
    if (f)
      fprintf(f, "%u %p\n", i, (void *)p);
    pthread_mutex_unlock(&shared);
    free(p);
  }
  if (f)
    fclose(f);
  return NULL;
}

static void threads_holding_locks_do_not_reach_forkserver_children(void **state) {
  (void)state;
  busy b;
  memset(&b, 0, sizeof b);
  pthread_mutex_init(&b.mu, NULL);
  pthread_cond_init(&b.cv, NULL);
  pthread_t holder, churners[4];
  pthread_create(&holder, NULL, hold_lock, &b);
  pthread_mutex_lock(&b.mu);
  while (!b.holding)
    pthread_cond_wait(&b.cv, &b.mu);
  pthread_mutex_unlock(&b.mu);
  for (int i = 0; i < 4; i++)
    pthread_create(&churners[i], NULL, churn, &b);
  /* The hazard is real: a fork child copies the lock as the holding thread left it, and
   * that thread does not exist in the child, so the lock stays taken there for good (a
   * child that waited for it would hang; trylock shows it without hanging). */
  mp_process *f = start_with(MP_START_FORK, try_held, NULL, 0);
  assert_int_equal(join_code(f), 1);
  mp_process_free(f);
  /* A fork server's child comes from the server's state, which no thread of ours touches. */
  mp_process *s = start_with(MP_START_FORKSERVER, try_held, NULL, 0);
  assert_int_equal(join_code(s), 0);
  mp_process_free(s);
  /* And children that allocate, format, write stdio and take the locks the busy threads
   * keep taking all finish (a deadlock would show as a join that times out). */
  for (int i = 0; i < 20; i++) {
    mp_process *p = start_with(MP_START_FORKSERVER, use_locks, NULL, 0);
    assert_int_equal(join_code(p), 0);
    mp_process_free(p);
  }
  pthread_mutex_lock(&b.mu);
  __atomic_store_n(&b.stop, 1, __ATOMIC_RELAXED);
  pthread_cond_broadcast(&b.cv);
  pthread_mutex_unlock(&b.mu);
  pthread_join(holder, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(churners[i], NULL);
  pthread_cond_destroy(&b.cv);
  pthread_mutex_destroy(&b.mu);
}

/* ---- what the child is given ------------------------------------------------------------ */

/* Sends back what it reads from stdin (or "closed"), its working directory, and whether
 * descriptor 0 is open. */
static int report_stdio_cwd(mp_args *a) {
  mp_conn *c = NULL;
  if (mp_args_get_conn(a, 0, &c) != 0)
    return 98;
  char in[64] = "closed", cwd[4096] = "";
  if (fcntl(0, F_GETFD) >= 0) {
    ssize_t n = read(0, in, sizeof in - 1);
    in[n > 0 ? n : 0] = '\0';
  }
  if (getcwd(cwd, sizeof cwd) == NULL)
    return 97;
  char msg[4200];
  snprintf(msg, sizeof msg, "%s|%s", in, cwd);
  return send_text(c, msg) == 0 ? 0 : 96;
}

/* Starts report_stdio_cwd and returns what it sent; close_stdin: with descriptor 0 closed
 * (after the pipe is made, so that no end of it takes the number). */
static char *run_report(int close_stdin) {
  mp_conn *mine, *theirs;
  assert_mp_ok(mp_pipe(&mine, &theirs, 1));
  mp_args *a = args_with_conn(theirs);
  if (close_stdin)
    close(0);
  mp_process *p = start_with(MP_START_FORKSERVER, report_stdio_cwd, a, 0);
  char *got = recv_text(mine);
  assert_int_equal(join_code(p), 0);
  mp_process_free(p);
  mp_args_free(a);
  mp_conn_free(mine);
  mp_conn_free(theirs);
  return got;
}

static void stdio_and_cwd_are_the_requesters_at_the_start(void **state) {
  (void)state;
  served warm = start_reporter(); /* the server runs, with the stdio and cwd of now */
  finish_reporter(&warm);
  char dir[] = "/tmp/mp-forkserver-XXXXXX", real[4096];
  assert_non_null(mkdtemp(dir));
  assert_non_null(realpath(dir, real));
  char old[4096];
  assert_non_null(getcwd(old, sizeof old));
  int saved = dup(0), p[2];
  assert_true(saved >= 0);
  assert_int_equal(pipe(p), 0);
  assert_int_equal(dup2(p[0], 0), 0);
  close(p[0]);
  assert_int_equal(write(p[1], "hello", 5), 5);
  close(p[1]);
  assert_int_equal(chdir(dir), 0);
  char *got = run_report(0);
  char want[4200];
  snprintf(want, sizeof want, "hello|%s", real);
  assert_string_equal(got, want);
  free(got);
  /* A descriptor the requester has closed is closed in the child too (though this start
   * made descriptors of its own, which took the free number). */
  got = run_report(1);
  snprintf(want, sizeof want, "closed|%s", real);
  assert_string_equal(got, want);
  free(got);
  assert_int_equal(dup2(saved, 0), 0);
  close(saved);
  assert_int_equal(chdir(old), 0);
  assert_int_equal(rmdir(dir), 0);
}

/* The server keeps nothing of a request once the child runs: its descriptors stay flat. */
static int count_fds_of(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.std_out.mode = MP_STDIO_PIPE;
  const char *argv[] = {"ls", path, NULL};
  mp_run_result r;
  assert_mp_ok(mp_run(argv, &o, &r));
  assert_int_equal(r.returncode, 0);
  int n = 0;
  for (const char *c = r.out; *c; c++)
    n += *c == '\n';
  mp_run_result_free(&r);
  return n;
}

static int return_seven(mp_args *a) {
  (void)a;
  return 7;
}

/* Once joined, a served child's wait handle becomes ready again when the server has closed
 * its end, which it does right after it reported: then the server holds nothing of it. */
static void await_server_let_go(mp_process *p) {
  mp_waitable w = mp_waitable_process(p);
  assert_int_equal(mp_wait(&w, 1, 60000), 1);
}

static void the_server_keeps_no_handles_of_finished_requests(void **state) {
  (void)state;
  served s = start_reporter();
  pid_t server = (pid_t)s.r.os_parent;
  assert_mp_ok(send_text(s.mine, "bye"));
  assert_int_equal(join_code(s.p), 0);
  await_server_let_go(s.p);
  mp_process_free(s.p);
  mp_conn_free(s.mine);
  int before = count_fds_of(server);
  mp_conn *x, *y;
  assert_mp_ok(mp_pipe(&x, &y, 1));
  mp_args *a = args_with_conn(y);
  for (int i = 0; i < 100; i++) {
    mp_process *p = start_with(MP_START_FORKSERVER, return_seven, a, 0);
    assert_int_equal(join_code(p), 7);
    await_server_let_go(p);
    mp_process_free(p);
  }
  mp_args_free(a);
  mp_conn_free(x);
  mp_conn_free(y);
  assert_int_equal(count_fds_of(server), before);
}

/* ---- exit codes and signals, as under the other methods ---------------------------------- */

static int return_arg(mp_args *a) {
  int64_t v = 0;
  return mp_args_get_int(a, 0, &v) == 0 ? (int)v : 99;
}

static int crash(mp_args *a) {
  (void)a;
  signal(SIGSEGV, SIG_DFL);
  volatile uintptr_t addr = 16; /* not NULL: no sanitizer intercepts */
  *(volatile int *)addr = 1;
  return 0;
}

static int abort_now(mp_args *a) {
  (void)a;
  signal(SIGABRT, SIG_DFL);
  abort();
}

static int sleep_long(mp_args *a) {
  (void)a;
  mp_sleep_ms(600000);
  return 0;
}

/* The exit codes of a run of children: returns 0, 42 and 255, a crash, an abort, a
 * terminate and a kill. */
static void codes_under(mp_start_method m, int codes[7]) {
  int64_t values[] = {0, 42, 255};
  for (int i = 0; i < 3; i++) {
    mp_args *a = NULL;
    assert_mp_ok(mp_args_create(&a));
    assert_mp_ok(mp_args_add_int(a, values[i]));
    mp_process *p = start_with(m, return_arg, a, 0);
    codes[i] = join_code(p);
    mp_process_free(p);
    mp_args_free(a);
  }
  mp_target_fn fns[] = {crash, abort_now};
  for (int i = 0; i < 2; i++) {
    mp_process *p = start_with(m, fns[i], NULL, 0);
    codes[3 + i] = join_code(p);
    mp_process_free(p);
  }
  for (int i = 0; i < 2; i++) {
    mp_process *p = start_with(m, sleep_long, NULL, 0);
    assert_mp(MP_ETIMEDOUT, mp_process_join(p, 20));
    assert_mp_ok(i == 0 ? mp_process_terminate(p) : mp_process_kill(p));
    codes[5 + i] = join_code(p);
    assert_mp_ok(mp_process_kill(p)); /* after the end: nothing happens */
    mp_process_free(p);
  }
}

static void exit_codes_and_signals_read_as_under_the_other_methods(void **state) {
  (void)state;
  const int want[7] = {0, 42, 255, -SIGSEGV, -SIGABRT, -SIGTERM, -SIGKILL};
  mp_start_method ms[] = {MP_START_FORK, MP_START_SPAWN, MP_START_FORKSERVER};
  for (int i = 0; i < 3; i++) {
    int got[7];
    codes_under(ms[i], got);
    for (int k = 0; k < 7; k++)
      if (got[k] != want[k])
        fail_msg("method %d, case %d: exit code %d, want %d", (int)ms[i], k, got[k], want[k]);
  }
}

/* ---- pools ---------------------------------------------------------------------------------- */

static int square(const mp_value *in, mp_value **out) {
  int64_t v = 0;
  if (mp_value_get_int(in, &v) != 0)
    return 1;
  *out = mp_value_int(v * v);
  return *out ? 0 : 1;
}

static void a_pool_runs_on_forkserver_workers(void **state) {
  (void)state;
  enum { N = 100 };
  mp_pool_opts o;
  memset(&o, 0, sizeof o);
  o.method = MP_START_FORKSERVER;
  mp_pool *pool = NULL;
  assert_mp_ok(mp_pool_create(&pool, 2, &o));
  mp_value *in[N], *out[N];
  for (int i = 0; i < N; i++)
    assert_non_null(in[i] = mp_value_int(i));
  assert_mp_ok(mp_pool_map(pool, square, (const mp_value *const *)in, N, 0, out));
  for (int i = 0; i < N; i++) {
    int64_t x = -1;
    assert_mp_ok(mp_value_get_int(out[i], &x));
    assert_int_equal(x, (int64_t)i * i);
    mp_value_free(in[i]);
    mp_value_free(out[i]);
  }
  assert_mp_ok(mp_pool_close(pool));
  assert_mp_ok(mp_pool_join(pool, 60000));
  mp_pool_free(pool);
}

int main(int argc, char **argv) {
  unsetenv("MULTIPROC_START_METHOD"); /* the cases choose their methods themselves */
  mp_init(&argc, &argv);
  assert_int_equal(mp_set_forkserver_preload(preload), 0);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_preload_runs_once_in_the_server_before_any_child),
      cmocka_unit_test(a_failing_preload_keeps_the_server_from_starting),
      cmocka_unit_test(a_killed_server_takes_its_children_and_is_replaced),
      cmocka_unit_test(a_server_that_does_not_answer_is_replaced),
      cmocka_unit_test(random_server_kills_never_hang),
      cmocka_unit_test(too_many_handles_are_refused_and_the_server_stays),
      cmocka_unit_test(children_die_with_a_spawned_requester),
      cmocka_unit_test(children_die_with_a_forked_requester),
      cmocka_unit_test(threads_holding_locks_do_not_reach_forkserver_children),
      cmocka_unit_test(stdio_and_cwd_are_the_requesters_at_the_start),
      cmocka_unit_test(the_server_keeps_no_handles_of_finished_requests),
      cmocka_unit_test(exit_codes_and_signals_read_as_under_the_other_methods),
      cmocka_unit_test(a_pool_runs_on_forkserver_workers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
