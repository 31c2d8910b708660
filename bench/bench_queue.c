/* mp_queue beside Python's multiprocessing.Queue, a raw socketpair (a 4-byte length prefix
 * and the payload in one write per message) and ZeroMQ PUSH/PULL over ipc:// (when
 * Debian's libzmq3-dev is installed). Cases: 1 producer -> 1 consumer at 64 B, 4 KiB and
 * 1 MiB; 4 producers -> 1 consumer at 64 B. Producers are child processes, the consumer is
 * this process. Every peer does the same: the producers start and say they are ready, the
 * consumer gives the "go" and starts its clock, then checks every message (its size, its
 * producer's order, a stamp at its start and end) and stops the clock at the last one;
 * the producers are joined after. A Windows build measures mp_queue alone (information). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

#ifndef _WIN32
#  include <errno.h>
#  include <fcntl.h>
#  include <signal.h>
#  include <sys/socket.h>
#  include <sys/wait.h>
#  include <unistd.h>
#endif
#ifdef MP_HAVE_ZMQ
#  include <zmq.h>
#endif

#define MAX_PRODUCERS 4

struct hdr {
  uint32_t producer, seq;
  uint64_t stamp;
};

static void make(unsigned char *buf, size_t size, uint32_t producer, uint32_t seq) {
  struct hdr h = {producer, seq, bench_stamp(producer, seq)};
  memcpy(buf, &h, sizeof h);
  memcpy(buf + size - 8, &h.stamp, 8);
}

/* The consumer's check of every message. */
struct verifier {
  uint32_t expected[MAX_PRODUCERS];
  int producers;
  size_t size;
};

static int verify(struct verifier *v, const unsigned char *m, size_t len) {
  struct hdr h;
  uint64_t tail;
  if (len != v->size)
    return (int)bench_fail("a message of %zu bytes, expected %zu", len, v->size);
  memcpy(&h, m, sizeof h);
  memcpy(&tail, m + len - 8, 8);
  if (h.producer >= (uint32_t)v->producers || h.seq != v->expected[h.producer] ||
      h.stamp != bench_stamp(h.producer, h.seq) || tail != h.stamp)
    return (int)bench_fail("corrupt or out-of-order message (producer %u seq %u)", h.producer,
                           h.seq);
  v->expected[h.producer]++;
  return 0;
}

struct qcase {
  const char *name;
  size_t size;
  int producers;
  uint32_t count;    /* per producer, C peers */
  uint32_t py_count; /* per producer, Python (slower: a shorter run of the same job) */
};

static double rate(uint64_t total, double t0_us) {
  return (double)total * 1e6 / (bench_now_us() - t0_us);
}

/* ---- mp_queue ------------------------------------------------------------------------- */

/* Producer: says it is ready on its control pipe, waits for "go", puts count messages. */
static int queue_producer(mp_args *a) {
  mp_queue *q;
  mp_conn *ctl;
  int64_t id, count, size, timeout;
  if (mp_args_get_queue(a, 0, &q) || mp_args_get_conn(a, 1, &ctl) || mp_args_get_int(a, 2, &id) ||
      mp_args_get_int(a, 3, &count) || mp_args_get_int(a, 4, &size) ||
      mp_args_get_int(a, 5, &timeout))
    return 1;
  unsigned char *buf = calloc(1, (size_t)size);
  void *go = NULL;
  size_t len;
  if (!buf || mp_conn_send(ctl, "r", 1) || mp_conn_recv(ctl, &go, &len, (int)timeout))
    return 2;
  mp_free(go);
  for (uint32_t s = 0; s < (uint32_t)count; s++) {
    make(buf, (size_t)size, (uint32_t)id, s);
    if (mp_queue_put(q, buf, (size_t)size, (int)timeout) != 0)
      return 3;
  }
  free(buf);
  return 0;
}

static double run_queue(void *arg) {
  const struct qcase *c = arg;
  mp_queue *q = NULL;
  mp_process *p[MAX_PRODUCERS] = {0};
  mp_conn *ctl[MAX_PRODUCERS] = {0};
  struct verifier v = {{0}, c->producers, c->size};
  int timeout = bench_remaining_ms(), started = 0;
  double result = -1;
  if (mp_queue_create(&q, 0) != 0)
    return bench_fail("mp_queue_create: %s", mp_last_error());
  for (; started < c->producers; started++) {
    mp_args *a = NULL;
    mp_conn *child_end = NULL;
    int rc = mp_pipe(&ctl[started], &child_end, 1) || mp_args_create(&a) ||
             mp_args_add_queue(a, q) || mp_args_add_conn(a, child_end) ||
             mp_args_add_int(a, started) || mp_args_add_int(a, c->count) ||
             mp_args_add_int(a, (int64_t)c->size) || mp_args_add_int(a, timeout) ||
             bench_start_child(&p[started], queue_producer, a);
    mp_args_free(a);
    mp_conn_free(child_end);
    if (rc) {
      bench_fail("starting producer %d: %s", started, mp_last_error());
      goto out;
    }
  }
  for (int i = 0; i < c->producers; i++) {
    void *ready = NULL;
    size_t len;
    if (mp_conn_recv(ctl[i], &ready, &len, timeout) != 0) {
      bench_fail("producer %d never said it was ready: %s", i, mp_last_error());
      goto out;
    }
    mp_free(ready);
  }
  double t0 = bench_now_us();
  for (int i = 0; i < c->producers; i++)
    mp_conn_send(ctl[i], "g", 1);
  uint64_t total = (uint64_t)c->count * (uint64_t)c->producers;
  for (uint64_t i = 0; i < total; i++) {
    void *m;
    size_t len;
    if (mp_queue_get(q, &m, &len, timeout) != 0) {
      bench_fail("got %llu of %llu messages: %s", (unsigned long long)i, (unsigned long long)total,
                 mp_last_error());
      goto out;
    }
    int bad = verify(&v, m, len);
    mp_free(m);
    if (bad)
      goto out;
  }
  result = rate(total, t0);
out:
  for (int i = 0; i < started; i++) {
    int code = -1;
    if (mp_process_join(p[i], result < 0 ? 0 : bench_remaining_ms()) != 0) {
      mp_process_kill(p[i]);
      mp_process_join(p[i], 10000);
    }
    mp_process_exitcode(p[i], &code);
    if (code != 0 && result >= 0)
      result = bench_fail("producer %d exited with %d", i, code);
    mp_process_free(p[i]);
    mp_conn_free(ctl[i]);
  }
  mp_queue_free(q);
  return result;
}

#ifndef _WIN32
/* ---- the raw peers' control: a shared "ready" pipe, one "go" pipe per producer -------- */

struct control {
  int ready[2];
  int go[MAX_PRODUCERS][2];
  pid_t pid[MAX_PRODUCERS];
  int n;
};

static int control_open(struct control *k, int producers) {
  memset(k, -1, sizeof *k);
  k->n = 0;
  if (pipe2(k->ready, O_CLOEXEC) != 0)
    return -1;
  for (int i = 0; i < producers; i++)
    if (pipe2(k->go[i], O_CLOEXEC) != 0)
      return -1;
  return 0;
}

/* In producer i: keeps only its own ends (so that the consumer's close of "go" reaches
 * it as EOF), says "ready" and waits for "go" (a byte; EOF: the consumer gave up). */
static void control_wait_go(struct control *k, int i) {
  char b = 'r';
  close(k->ready[0]);
  for (int j = 0; j < MAX_PRODUCERS; j++) {
    if (k->go[j][1] >= 0)
      close(k->go[j][1]);
    if (j != i && k->go[j][0] >= 0)
      close(k->go[j][0]);
  }
  if (write(k->ready[1], &b, 1) != 1 || read(k->go[i][0], &b, 1) != 1)
    _exit(4);
}

/* In producer i, after its last send: waits until the consumer confirms it got everything
 * (it closes the go pipe: EOF), so nothing the producer sent is dropped at close. */
static void control_wait_done(struct control *k, int i) {
  char b;
  while (read(k->go[i][0], &b, 1) > 0) {
  }
}

/* In the consumer: waits for every producer's "ready" within the budget. */
static int control_all_ready(struct control *k, int producers) {
  for (int got = 0; got < producers;) {
    char b[MAX_PRODUCERS];
    ssize_t n;
    if (!bench_poll_in(k->ready[0]) || (n = read(k->ready[0], b, sizeof b)) <= 0)
      return -1;
    got += (int)n;
  }
  return 0;
}

static void control_go(struct control *k) {
  for (int i = 0; i < k->n; i++) {
    ssize_t w = write(k->go[i][1], "g", 1);
    (void)w; /* a producer that is gone shows in its exit status, checked at the end */
  }
}

/* Closes everything (EOF on "go" is "done" for the producers), reaps the producers within
 * the budget (killing them when ok is 0) and returns whether they all exited with 0. */
static int control_close(struct control *k, int ok) {
  int clean = 1;
  for (int i = 0; i < MAX_PRODUCERS; i++) {
    if (k->go[i][1] >= 0)
      close(k->go[i][1]);
    if (k->go[i][0] >= 0)
      close(k->go[i][0]);
  }
  close(k->ready[0]);
  close(k->ready[1]);
  for (int i = 0; i < k->n; i++) {
    if (!ok)
      kill(k->pid[i], SIGKILL);
    int st = bench_waitpid(k->pid[i]);
    clean &= st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  return clean;
}

/* ---- raw socketpair: [u32 length][payload] in one write; a buffered reader ------------ */

static void write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0)
      _exit(2);
    p += w, n -= (size_t)w;
  }
}

struct reader {
  int fd;
  unsigned char buf[65536];
  size_t at, len;
};

/* Copies n bytes out of the stream; large reads go straight to dst. Reads are bounded by
 * the socket's SO_RCVTIMEO. */
static int read_exact(struct reader *r, unsigned char *dst, size_t n) {
  while (n > 0) {
    if (r->at == r->len) {
      int direct = n >= sizeof r->buf;
      ssize_t got = read(r->fd, direct ? dst : r->buf, direct ? n : sizeof r->buf);
      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0)
        return -1;
      if (direct) {
        dst += got, n -= (size_t)got;
        continue;
      }
      r->at = 0, r->len = (size_t)got;
    }
    size_t k = r->len - r->at < n ? r->len - r->at : n;
    memcpy(dst, r->buf + r->at, k);
    r->at += k, dst += k, n -= k;
  }
  return 0;
}

static double run_socketpair(void *arg) {
  const struct qcase *c = arg;
  struct control k;
  int sv[2];
  if (control_open(&k, 1) != 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return bench_fail("socketpair/pipe failed");
  bench_bound_reads(sv[0]);
  if ((k.pid[0] = bench_fork()) == 0) {
    close(sv[0]);
    unsigned char *frame = calloc(1, c->size + 4);
    uint32_t len = (uint32_t)c->size;
    memcpy(frame, &len, 4);
    control_wait_go(&k, 0);
    for (uint32_t s = 0; s < c->count; s++) {
      make(frame + 4, c->size, 0, s);
      write_all(sv[1], frame, c->size + 4);
    }
    _exit(0);
  }
  k.n = 1;
  close(sv[1]);
  struct reader *r = calloc(1, sizeof *r);
  unsigned char *m = malloc(c->size);
  struct verifier v = {{0}, 1, c->size};
  double result = -1;
  if (!r || !m || control_all_ready(&k, 1) != 0) {
    bench_fail("the producer never said it was ready");
    goto out;
  }
  r->fd = sv[0];
  control_go(&k);
  double t0 = bench_now_us();
  for (uint32_t i = 0; i < c->count; i++) {
    uint32_t len;
    if (read_exact(r, (unsigned char *)&len, 4) || len != c->size || read_exact(r, m, len)) {
      bench_fail("message %u: short read, timeout or bad length", i);
      goto out;
    }
    if (verify(&v, m, len))
      goto out;
  }
  result = rate(c->count, t0);
out:
  close(sv[0]);
  if (!control_close(&k, result >= 0) && result >= 0)
    result = bench_fail("the producer did not exit cleanly");
  free(r);
  free(m);
  return result;
}

/* ---- ZeroMQ PUSH/PULL over ipc:// ------------------------------------------------------- */

#  ifdef MP_HAVE_ZMQ
/* A fair peer: ZeroMQ 4.3's PUSH socket can drop the tail of the stream when it closes
 * right after its last send, so each producer keeps its socket open until the consumer
 * confirms it has every message (outside the timed region), and the consumer's receive
 * is bounded (ZMQ_RCVTIMEO): a lost message is a failure line, never a hang. */
static double run_zmq(void *arg) {
  const struct qcase *c = arg;
  char ep[64];
  snprintf(ep, sizeof ep, "ipc:///tmp/mp-bench-queue-%d.ipc", (int)getpid());
  struct control k;
  if (control_open(&k, c->producers) != 0)
    return bench_fail("pipe failed");
  void *ctx = zmq_ctx_new(), *pull = zmq_socket(ctx, ZMQ_PULL);
  int timeout = bench_remaining_ms();
  zmq_setsockopt(pull, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  double result = -1;
  if (zmq_bind(pull, ep) != 0) {
    bench_fail("zmq_bind %s: %s", ep, zmq_strerror(zmq_errno()));
    goto out;
  }
  for (int i = 0; i < c->producers; i++, k.n++) {
    if ((k.pid[i] = bench_fork()) == 0) {
      void *cx = zmq_ctx_new(), *push = zmq_socket(cx, ZMQ_PUSH);
      unsigned char *buf = calloc(1, c->size);
      if (!buf || zmq_connect(push, ep) != 0)
        _exit(2);
      control_wait_go(&k, i);
      for (uint32_t s = 0; s < c->count; s++) {
        make(buf, c->size, (uint32_t)i, s);
        if (zmq_send(push, buf, c->size, 0) != (int)c->size)
          _exit(2);
      }
      control_wait_done(&k, i);
      int linger = 0; /* everything was delivered: nothing to wait for */
      zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
      zmq_close(push);
      zmq_ctx_term(cx);
      _exit(0);
    }
  }
  if (control_all_ready(&k, c->producers) != 0) {
    bench_fail("a producer never said it was ready");
    goto out;
  }
  struct verifier v = {{0}, c->producers, c->size};
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  uint64_t total = (uint64_t)c->count * (uint64_t)c->producers, i;
  control_go(&k);
  double t0 = bench_now_us();
  for (i = 0; i < total; i++) {
    if (zmq_msg_recv(&msg, pull, 0) < 0) {
      bench_fail("ZeroMQ delivered %llu of %llu messages within %d s: %s", (unsigned long long)i,
                 (unsigned long long)total, timeout / 1000, zmq_strerror(zmq_errno()));
      break;
    }
    if (verify(&v, zmq_msg_data(&msg), zmq_msg_size(&msg)))
      break;
  }
  if (i == total)
    result = rate(total, t0);
  zmq_msg_close(&msg);
out:
  if (!control_close(&k, result >= 0) && result >= 0)
    result = bench_fail("a producer did not exit cleanly");
  int linger = 0;
  zmq_setsockopt(pull, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(pull);
  zmq_ctx_term(ctx);
  unlink(ep + strlen("ipc://"));
  return result;
}
#  endif
#endif

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  bench_init("queue", argc, argv);
#ifdef _WIN32
  /* Every lock operation is a kernel call on Windows, and much slower under Wine. */
  static const struct qcase cases[] = {
      {"1->1 64 B", 64, 1, 5000, 0},
      {"1->1 4 KiB", 4096, 1, 2000, 0},
      {"1->1 1 MiB", 1 << 20, 1, 200, 0},
      {"4->1 64 B", 64, 4, 1250, 0},
  };
#else
  static const struct qcase cases[] = {
      {"1->1 64 B", 64, 1, 1000000, 200000},
      {"1->1 4 KiB", 4096, 1, 200000, 100000},
      {"1->1 1 MiB", 1 << 20, 1, 1000, 500},
      {"4->1 64 B", 64, 4, 250000, 50000},
  };
#endif
  bench_case *bc[4];
  for (int i = 0; i < 4; i++) {
    const struct qcase *c = &cases[i];
    char args[128];
    bc[i] = bench_case_new("queue", c->name, "msg/s", 1);
    bench_peer(bc[i], "multiproc mp_queue", run_queue, (void *)c);
#ifndef _WIN32
    if (c->producers == 1)
      bench_peer(bc[i], "raw socketpair", run_socketpair, (void *)c);
#  ifdef MP_HAVE_ZMQ
    bench_peer(bc[i], "ZeroMQ PUSH/PULL ipc://", run_zmq, (void *)c);
#  endif
#endif
    snprintf(args, sizeof args, "rate %zu %u %d", c->size, c->py_count, c->producers);
    bench_python_peer(bc[i], "Python multiprocessing.Queue", "bench_queue.py", args);
    bench_case_run(bc[i]);
  }
#if !defined(_WIN32) && !defined(MP_HAVE_ZMQ)
  bench_note("ZeroMQ not measured: install libzmq3-dev and rebuild");
#endif
  const char *py = "Python multiprocessing.Queue";
  bench_target("queue_64B_vs_python", bc[0], "multiproc mp_queue", py, ">=", 10);
  bench_target("queue_4KiB_vs_python", bc[1], "multiproc mp_queue", py, ">=", 10);
  bench_target("queue_4to1_64B_vs_python", bc[3], "multiproc mp_queue", py, ">=", 10);
  bench_target("queue_1MiB_vs_socketpair", bc[2], "multiproc mp_queue", "raw socketpair",
               ">=", 0.7);
  return bench_finish();
}
