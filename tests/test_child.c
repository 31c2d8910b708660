/* The child engine's behaviours, each checked through both of its users, mp_process and
 * mp_popen, so that the two cannot drift apart again: exit codes for a normal exit,
 * terminate, kill and a crash; reaping of children freed while they ran; handle counts over
 * many starts; starting while another thread blocks reading stdin; tracking without pidfds.
 * The process half runs under every start method (tests/CMakeLists.txt re-runs it). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child.h"
#include "platform.h"
#include "testutil.h"

#ifdef _WIN32
#  include <windows.h>
#  include <fcntl.h>
#  include <io.h>
#  define MANY 40 /* a start costs ~100 ms under Wine */
#else
#  include <errno.h>
#  include <sys/wait.h>
#  include <unistd.h>
#  define MANY 1000
#endif

/* ---- one child, either kind ----------------------------------------------------------- */

enum { KIND_PROCESS, KIND_POPEN };
enum { DO_EXIT7, DO_SLEEP, DO_CRASH };

typedef struct child {
  int kind;
  mp_process *p;
  mp_popen *q;
} child;

static int target_exit7(mp_args *a) {
  (void)a;
  return 7;
}

static int target_sleep(mp_args *a) {
  (void)a;
  mp_sleep_ms(60000);
  return 0;
}

static int target_crash(mp_args *a) {
  (void)a;
  mp_test_crash();
  return 0;
}

static void start(child *c, int kind, int what) {
  static const mp_target_fn fns[] = {target_exit7, target_sleep, target_crash};
  memset(c, 0, sizeof *c);
  c->kind = kind;
  if (kind == KIND_PROCESS) {
    assert_mp_ok(mp_process_create(&c->p, fns[what], NULL, NULL));
    assert_mp_ok(mp_process_start(c->p));
    return;
  }
  const char *prog = mp_test_child_program();
  const char *argv[4][4] = {
      {prog, "exit", "7", NULL}, {prog, "sleep", "60000", NULL}, {prog, "crash", NULL, NULL}};
  mp_popen_opts o;
  memset(&o, 0, sizeof o);
  o.std_out.mode = o.std_err.mode = MP_STDIO_DEVNULL;
  assert_mp_ok(mp_popen_create(&c->q, argv[what], &o));
}

static int64_t pid_of(const child *c) {
  return c->kind == KIND_PROCESS ? mp_process_pid(c->p) : mp_popen_pid(c->q);
}

static int wait_code(child *c) {
  int code = 12345;
  if (c->kind == KIND_PROCESS) {
    assert_mp_ok(mp_process_join(c->p, 60000));
    assert_mp_ok(mp_process_exitcode(c->p, &code));
  } else {
    assert_mp_ok(mp_popen_wait(c->q, 60000));
    assert_mp_ok(mp_popen_returncode(c->q, &code));
  }
  return code;
}

static void terminate(child *c) {
  assert_mp_ok(c->kind == KIND_PROCESS ? mp_process_terminate(c->p) : mp_popen_terminate(c->q));
}

static void kill_(child *c) {
  assert_mp_ok(c->kind == KIND_PROCESS ? mp_process_kill(c->p) : mp_popen_kill(c->q));
}

static void release(child *c) {
  if (c->kind == KIND_PROCESS)
    mp_process_free(c->p);
  else
    mp_popen_free(c->q);
}

/* ---- exit codes ------------------------------------------------------------------------- */

static void exit_codes_agree(int kind) {
  child c;
  start(&c, kind, DO_EXIT7);
  assert_int_equal(wait_code(&c), 7);
  release(&c);
  start(&c, kind, DO_SLEEP);
  terminate(&c);
  assert_int_equal(wait_code(&c), -15);
  kill_(&c); /* after the end: nothing happens, the code stays */
  assert_int_equal(wait_code(&c), -15);
  release(&c);
  start(&c, kind, DO_SLEEP);
  kill_(&c);
  assert_int_equal(wait_code(&c), -9);
  release(&c);
  start(&c, kind, DO_CRASH);
  assert_int_equal(wait_code(&c), -11);
  release(&c);
}

static void process_exit_codes(void **state) {
  (void)state;
  exit_codes_agree(KIND_PROCESS);
}

static void popen_exit_codes(void **state) {
  (void)state;
  exit_codes_agree(KIND_POPEN);
}

/* ---- reaping ------------------------------------------------------------------------------ */

/* Waits until the child has exited without collecting it (POSIX: it stays a zombie, or a
 * fork server's child waits for its server to report it). A process is waited for by the
 * library's own wait, which never collects; a popen by the OS. */
static void await_exit_uncollected(child *c) {
  if (c->kind == KIND_PROCESS) {
    mp_waitable w = mp_waitable_process(c->p);
    assert_int_equal(mp_wait(&w, 1, 60000), 1);
    return;
  }
  int64_t pid = pid_of(c);
#ifdef _WIN32
  HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)pid);
  if (h != NULL) {
    assert_int_equal(WaitForSingleObject(h, 60000), WAIT_OBJECT_0);
    CloseHandle(h);
  }
#else
  siginfo_t si;
  int r;
  memset(&si, 0, sizeof si);
  while ((r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT)) != 0 && errno == EINTR) {
  }
  assert_int_equal(si.si_pid, (pid_t)pid);
#endif
}

/* A child freed while it ran is reaped by the next start (no zombie stays behind). */
static void freed_children_are_reaped(int kind) {
  child c, next;
  start(&c, kind, DO_EXIT7);
#ifndef _WIN32
  int64_t pid = pid_of(&c);
#endif
  await_exit_uncollected(&c);
  release(&c); /* never waited for */
  start(&next, kind, DO_EXIT7);
  assert_int_equal(wait_code(&next), 7);
  release(&next);
#ifndef _WIN32
  int st;
  assert_int_equal(waitpid((pid_t)pid, &st, WNOHANG), -1);
  assert_int_equal(errno, ECHILD);
#endif
  assert_int_equal(mp__child_abandoned_count(), 0);
}

static void process_freed_children_are_reaped(void **state) {
  (void)state;
  freed_children_are_reaped(KIND_PROCESS);
}

static void popen_freed_children_are_reaped(void **state) {
  (void)state;
  freed_children_are_reaped(KIND_POPEN);
}

/* ---- handle counts ------------------------------------------------------------------------ */

static void handles_stay_flat(int kind) {
  child c;
  for (int i = 0; i < 3; i++) { /* warm up: lazily made threads, pipes and jobs */
    start(&c, kind, DO_EXIT7);
    wait_code(&c);
    release(&c);
  }
  int before = mp_test_open_handles();
  for (int i = 0; i < MANY; i++) {
    start(&c, kind, DO_EXIT7);
    assert_int_equal(wait_code(&c), 7);
    release(&c);
  }
  assert_int_equal(mp_test_open_handles(), before);
}

static void process_handles_stay_flat(void **state) {
  (void)state;
  handles_stay_flat(KIND_PROCESS);
}

static void popen_handles_stay_flat(void **state) {
  (void)state;
  handles_stay_flat(KIND_POPEN);
}

/* ---- a thread blocked reading stdin (bug: fflush(NULL) waited for its lock) ---------------- */

typedef struct stdin_reader {
  int got;
} stdin_reader;

static void read_stdin(void *arg) {
  stdin_reader *r = arg;
  r->got = fgetc(stdin); /* holds stdin's lock until a byte arrives */
}

typedef struct starter {
  int kind;
  mp_plat_mutex mu;
  mp_plat_cond cv;
  int done;
} starter;

static void start_and_wait(void *arg) {
  starter *s = arg;
  child c;
  start(&c, s->kind, DO_EXIT7);
  assert_int_equal(wait_code(&c), 7);
  release(&c);
  mp_plat_mutex_lock(&s->mu);
  s->done = 1;
  mp_plat_cond_signal(&s->cv);
  mp_plat_mutex_unlock(&s->mu);
}

/* Makes stdin a pipe that only this test writes to; returns the write end. */
static intptr_t stdin_from_pipe(int *saved) {
#ifdef _WIN32
  HANDLE r, w;
  assert_true(CreatePipe(&r, &w, NULL, 0));
  *saved = _dup(0);
  int fd = _open_osfhandle((intptr_t)r, _O_RDONLY | _O_BINARY);
  assert_int_equal(_dup2(fd, 0), 0);
  _close(fd);
  return (intptr_t)w;
#else
  int p[2];
  assert_int_equal(pipe(p), 0);
  *saved = dup(0);
  assert_int_equal(dup2(p[0], 0), 0);
  close(p[0]);
  return p[1];
#endif
}

static void stdin_restore(intptr_t w, int saved) {
#ifdef _WIN32
  DWORD n;
  assert_true(WriteFile((HANDLE)w, "x", 1, &n, NULL));
  CloseHandle((HANDLE)w);
  _dup2(saved, 0);
  _close(saved);
#else
  assert_int_equal(write((int)w, "x", 1), 1);
  close((int)w);
  dup2(saved, 0);
  close(saved);
#endif
}

static void starts_while_a_thread_reads_stdin(int kind) {
  int saved;
  intptr_t w = stdin_from_pipe(&saved);
  stdin_reader r = {0};
  mp_test_thread *reader = mp_test_thread_start(read_stdin, &r);
  /* Let the reader take the lock: a start before that proves nothing, so wait for its
   * thread to be blocked inside fgetc, which this test sees as the lock being held. */
#ifndef _WIN32
  for (int i = 0; i < 10000 && ftrylockfile(stdin) == 0; i++) {
    funlockfile(stdin);
    mp_sleep_ms(1);
  }
#else
  mp_sleep_ms(200); /* the MSVCRT offers no trylock; the start below is valid either way */
#endif
  starter s;
  memset(&s, 0, sizeof s);
  s.kind = kind;
  mp_plat_mutex_init(&s.mu);
  mp_plat_cond_init(&s.cv);
  mp_test_thread *t = mp_test_thread_start(start_and_wait, &s);
  int64_t deadline = (int64_t)mp_monotonic_ns() + 60 * 1000000000LL;
  mp_plat_mutex_lock(&s.mu);
  while (!s.done && mp_plat_cond_wait(&s.cv, &s.mu, deadline) == 0) {
  }
  int done = s.done;
  mp_plat_mutex_unlock(&s.mu);
  stdin_restore(w, saved); /* frees the reader, and a start stuck behind it */
  mp_test_thread_join(reader);
  mp_test_thread_join(t);
  mp_plat_cond_destroy(&s.cv);
  mp_plat_mutex_destroy(&s.mu);
  assert_int_equal(r.got, 'x');
  assert_true(done); /* the start finished while stdin was locked */
}

static void process_starts_while_a_thread_reads_stdin(void **state) {
  (void)state;
  starts_while_a_thread_reads_stdin(KIND_PROCESS);
}

static void popen_starts_while_a_thread_reads_stdin(void **state) {
  (void)state;
  starts_while_a_thread_reads_stdin(KIND_POPEN);
}

/* ---- tracking without pidfds (old kernels, gVisor, seccomp) --------------------------------- */

static void tracked_without_pidfds(int kind) {
  child c;
  mp_plat_child_test_no_pidfd(1);
  start(&c, kind, DO_EXIT7);
  mp_plat_child_test_no_pidfd(0);
  assert_int_equal(wait_code(&c), 7);
  release(&c);
  mp_plat_child_test_no_pidfd(1);
  start(&c, kind, DO_SLEEP);
  mp_plat_child_test_no_pidfd(0);
  if (kind == KIND_PROCESS) {
    assert_mp(MP_ETIMEDOUT, mp_process_join(c.p, 0));
    mp_waitable w = mp_waitable_process(c.p);
    assert_mp(MP_ETIMEDOUT, mp_wait(&w, 1, 0));
  }
  kill_(&c);
  if (kind == KIND_PROCESS) { /* mp_wait sees the exit through the fallback's handle too */
    mp_waitable w = mp_waitable_process(c.p);
    assert_int_equal(mp_wait(&w, 1, 60000), 1);
  }
  assert_int_equal(wait_code(&c), -9);
  release(&c);
}

static void process_tracked_without_pidfds(void **state) {
  (void)state;
  tracked_without_pidfds(KIND_PROCESS);
}

static void popen_tracked_without_pidfds(void **state) {
  (void)state;
  tracked_without_pidfds(KIND_POPEN);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(process_exit_codes),
      cmocka_unit_test(popen_exit_codes),
      cmocka_unit_test(process_freed_children_are_reaped),
      cmocka_unit_test(popen_freed_children_are_reaped),
      cmocka_unit_test(process_handles_stay_flat),
      cmocka_unit_test(popen_handles_stay_flat),
      cmocka_unit_test(process_starts_while_a_thread_reads_stdin),
      cmocka_unit_test(popen_starts_while_a_thread_reads_stdin),
      cmocka_unit_test(process_tracked_without_pidfds),
      cmocka_unit_test(popen_tracked_without_pidfds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
