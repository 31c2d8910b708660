/* Process start+join latency (fork and spawn) and Pipe round trips, beside raw fork+waitpid,
 * raw posix_spawn of this same executable, a raw socketpair with the same framing, and
 * Python's multiprocessing, all in one run. Peers are interleaved round by round so that
 * the machine's drift hits all of them alike; medians are reported. */
#include <errno.h>
#include <multiproc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

#ifndef _WIN32
#  include <spawn.h>
#  include <sys/socket.h>
#  include <sys/wait.h>
#  include <unistd.h>
extern char **environ;
#endif

#define STARTS 200
#define ROUNDS 5
#define PINGS 20000
#define MSG 64

static double now_us(void) { return (double)mp_monotonic_ns() / 1000.0; }

static int nothing(mp_args *a) {
  (void)a;
  return 0;
}

static double mp_start_join_us(mp_start_method m) {
  mp_process_opts o;
  memset(&o, 0, sizeof o);
  o.method = m;
  mp_process *p = NULL;
  double t0 = now_us();
  if (mp_process_create(&p, nothing, NULL, &o) || mp_process_start(p) ||
      mp_process_join(p, MP_FOREVER)) {
    fprintf(stderr, "bench: process failed: %s\n", mp_last_error());
    exit(1);
  }
  int code = -1;
  mp_process_exitcode(p, &code);
  mp_process_free(p);
  if (code != 0) {
    fprintf(stderr, "bench: child exit code %d\n", code);
    exit(1);
  }
  return now_us() - t0;
}

#ifndef _WIN32
static double raw_fork_us(void) {
  double t0 = now_us();
  pid_t pid = fork();
  if (pid == 0)
    _exit(0);
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    exit(1);
  return now_us() - t0;
}

static double raw_spawn_us(const char *self) {
  char *argv[] = {(char *)self, "--exit-now", NULL};
  double t0 = now_us();
  pid_t pid;
  if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0)
    exit(1);
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    exit(1);
  return now_us() - t0;
}

/* ---- pipe round trips ------------------------------------------------------------------ */

static int echo(mp_args *a) {
  mp_conn *c = NULL;
  mp_args_get_conn(a, 0, &c);
  for (;;) {
    void *buf = NULL;
    size_t len = 0;
    if (mp_conn_recv(c, &buf, &len, MP_FOREVER) != 0)
      return 0;
    int rc = mp_conn_send(c, buf, len);
    mp_free(buf);
    if (rc)
      return 1;
  }
}

/* One round trip per message; every reply is checked against what was sent. */
static double mp_pingpong_us(void) {
  mp_conn *a, *b;
  mp_args *args;
  mp_process *p;
  mp_pipe(&a, &b, 1);
  mp_args_create(&args);
  mp_args_add_conn(args, b);
  mp_process_opts o = {0};
  o.method = MP_START_FORK;
  mp_process_create(&p, echo, args, &o);
  mp_process_start(p);
  mp_conn_free(b);
  unsigned char msg[MSG];
  double t0 = now_us();
  for (int i = 0; i < PINGS; i++) {
    memset(msg, i & 0xff, sizeof msg);
    memcpy(msg, &i, sizeof i);
    void *buf = NULL;
    size_t len = 0;
    if (mp_conn_send(a, msg, MSG) || mp_conn_recv(a, &buf, &len, MP_FOREVER) || len != MSG ||
        memcmp(buf, msg, MSG) != 0) {
      fprintf(stderr, "bench: pipe round trip %d failed\n", i);
      exit(1);
    }
    mp_free(buf);
  }
  double us = (now_us() - t0) / PINGS;
  mp_conn_free(a);
  mp_process_join(p, MP_FOREVER);
  mp_process_free(p);
  mp_args_free(args);
  return us;
}

static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) {
      if (r < 0 && errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* The same framing by hand: a 4-byte big-endian length and the body in one write. */
static int raw_recv(int fd, unsigned char *body) {
  unsigned char h[4];
  if (read_full(fd, h, 4))
    return -1;
  uint32_t n = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | h[3];
  return n == MSG && read_full(fd, body, MSG) == 0 ? 0 : -1;
}

static int raw_send(int fd, const unsigned char *body) {
  unsigned char f[4 + MSG] = {0, 0, 0, MSG};
  memcpy(f + 4, body, MSG);
  return write(fd, f, sizeof f) == (ssize_t)sizeof f ? 0 : -1;
}

static double raw_pingpong_us(void) {
  int sv[2];
  socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    unsigned char body[MSG];
    while (raw_recv(sv[1], body) == 0 && raw_send(sv[1], body) == 0) {
    }
    _exit(0);
  }
  close(sv[1]);
  unsigned char msg[MSG], got[MSG];
  double t0 = now_us();
  for (int i = 0; i < PINGS; i++) {
    memset(msg, i & 0xff, sizeof msg);
    memcpy(msg, &i, sizeof i);
    if (raw_send(sv[0], msg) || raw_recv(sv[0], got) || memcmp(got, msg, MSG) != 0)
      exit(1);
  }
  double us = (now_us() - t0) / PINGS;
  close(sv[0]);
  waitpid(pid, NULL, 0);
  return us;
}
#endif

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--exit-now") == 0)
    return 0; /* the raw posix_spawn peer: the same executable, exiting at once */
  mp_init(&argc, &argv);
#ifdef _WIN32
  puts("bench_process: the peers (fork, posix_spawn, Python) are Linux-only");
  return 0;
#else
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  self[n > 0 ? n : 0] = '\0';
  static double mf[STARTS], rf[STARTS], ms[STARTS], rs[STARTS];
  for (int i = 0; i < 10; i++) { /* warm-up: forker thread, page cache, allocator */
    mp_start_join_us(MP_START_FORK);
    mp_start_join_us(MP_START_SPAWN);
  }
  for (int i = 0; i < STARTS; i++) {
    mf[i] = mp_start_join_us(MP_START_FORK);
    rf[i] = raw_fork_us();
    ms[i] = mp_start_join_us(MP_START_SPAWN);
    rs[i] = raw_spawn_us(self);
  }
  double mfm = bench_median(mf, STARTS), rfm = bench_median(rf, STARTS);
  double msm = bench_median(ms, STARTS), rsm = bench_median(rs, STARTS);
  if (argc > 1 && strcmp(argv[1], "--starts-only") == 0) {
    printf("fork %.0f us (raw %.0f), spawn %.0f us (raw %.0f)\n", mfm, rfm, msm, rsm);
    bench_target("process_fork_vs_raw_fork", mfm / rfm, "<=", 1.5);
    bench_target("process_spawn_vs_raw_posix_spawn", msm / rsm, "<=", 1.5);
    return 0;
  }

  double mp_rt[ROUNDS], raw_rt[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    mp_rt[r] = mp_pingpong_us();
    raw_rt[r] = raw_pingpong_us();
  }
  double mpm = bench_median(mp_rt, ROUNDS), rawm = bench_median(raw_rt, ROUNDS);

  char cmd[8192];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench_process.py %d %d %d", MP_BENCH_DIR, STARTS,
           PINGS, MSG);
  char *py = bench_capture(cmd);
  double pyf = py ? bench_field(py, "fork_us") : -1, pys = py ? bench_field(py, "spawn_us") : -1;
  double pyrt = py ? bench_field(py, "pipe_rtt_us") : -1;
  free(py);

  printf("process start+join, median of %d (microseconds)\n", STARTS);
  printf("  %-34s %10.0f\n", "multiproc fork", mfm);
  printf("  %-34s %10.0f\n", "raw fork()+waitpid", rfm);
  printf("  %-34s %10.0f\n", "Python Process (fork)", pyf);
  printf("  %-34s %10.0f\n", "multiproc spawn", msm);
  printf("  %-34s %10.0f\n", "raw posix_spawn(self)+waitpid", rsm);
  printf("  %-34s %10.0f\n", "Python Process (spawn)", pys);
  printf("pipe round trip, %d-byte message, median of %d runs of %d (microseconds)\n", MSG, ROUNDS,
         PINGS);
  printf("  %-34s %10.2f\n", "multiproc Pipe", mpm);
  printf("  %-34s %10.2f\n", "raw socketpair, same framing", rawm);
  printf("  %-34s %10.2f\n", "Python multiprocessing.Pipe", pyrt);
  bench_target("process_fork_vs_raw_fork", mfm / rfm, "<=", 1.5);
  bench_target("process_spawn_vs_raw_posix_spawn", msm / rsm, "<=", 1.5);
  if (pys > 0)
    bench_target("process_spawn_vs_python_spawn", msm / pys, "<=", 0.05);
  if (pyf > 0)
    bench_target("process_fork_vs_python_fork", mfm / pyf, "<=", 1.0);
  bench_target("pipe_rtt_vs_raw_socketpair", mpm / rawm, "<=", 1.2);
  if (pyrt > 0)
    bench_target("pipe_rtt_vs_python_pipe", mpm / pyrt, "<=", 1.0);
  return 0;
#endif
}
