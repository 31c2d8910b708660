/* mp_queue beside Python's multiprocessing.Queue, a raw socketpair (a 4-byte length prefix
 * and the payload in one write per message) and ZeroMQ PUSH/PULL over ipc:// (when
 * Debian's libzmq3-dev is installed). Cases: 1 producer -> 1 consumer at 64 B, 4 KiB and
 * 1 MiB; 4 producers -> 1 consumer at 64 B. Producers are child processes, the consumer is
 * this process. Every message is verified: its size, its producer's order, and a stamp
 * at its start and end. The clock runs from the first message received to the last, the
 * same for every peer. The C peers report the median of 3 runs, Python one run. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef MP_HAVE_ZMQ
#  include <zmq.h>
#endif

#include "benchutil.h"
#include "multiproc.h"

static void make(unsigned char *buf, size_t size, uint32_t producer, uint32_t seq) {
  struct bench_hdr h = {producer, seq, bench_stamp(producer, seq)};
  memcpy(buf, &h, sizeof h);
  memcpy(buf + size - 8, &h.stamp, 8);
}

/* The consumer's check of one message; exits on any fault (no speed is worth a wrong
 * message). */
struct verifier {
  uint32_t expected[8];
  int producers;
  size_t size;
  uint64_t first_ns, last_ns, got;
};

static void verify(struct verifier *v, const unsigned char *m, size_t len) {
  struct bench_hdr h;
  uint64_t tail;
  if (len != v->size) {
    fprintf(stderr, "message of %zu bytes, expected %zu\n", len, v->size);
    exit(3);
  }
  memcpy(&h, m, sizeof h);
  memcpy(&tail, m + len - 8, 8);
  if (h.producer >= (uint32_t)v->producers || h.seq != v->expected[h.producer] ||
      h.stamp != bench_stamp(h.producer, h.seq) || tail != h.stamp) {
    fprintf(stderr, "corrupt or out-of-order message (producer %u seq %u)\n", h.producer, h.seq);
    exit(3);
  }
  v->expected[h.producer]++;
  v->last_ns = mp_monotonic_ns();
  if (v->got++ == 0)
    v->first_ns = v->last_ns;
}

static double rate(const struct verifier *v) {
  return (double)(v->got - 1) * 1e9 / (double)(v->last_ns - v->first_ns);
}

struct bench_case {
  const char *name;
  size_t size;
  int producers;
  uint32_t count, py_count; /* per producer */
};

/* ---- mp_queue ------------------------------------------------------------------------- */

static int queue_producer(mp_args *a) {
  mp_queue *q;
  int64_t id, count, size;
  if (mp_args_get_queue(a, 0, &q) || mp_args_get_int(a, 1, &id) || mp_args_get_int(a, 2, &count) ||
      mp_args_get_int(a, 3, &size))
    return 1;
  unsigned char *buf = calloc(1, (size_t)size);
  for (uint32_t s = 0; buf && s < (uint32_t)count; s++) {
    make(buf, (size_t)size, (uint32_t)id, s);
    if (mp_queue_put(q, buf, (size_t)size, MP_FOREVER) != 0)
      return 2;
  }
  free(buf);
  return buf ? 0 : 3;
}

static double run_queue(const struct bench_case *c) {
  mp_queue *q;
  mp_process *p[8];
  struct verifier v = {{0}, c->producers, c->size, 0, 0, 0};
  if (mp_queue_create(&q, 0) != 0)
    exit(4);
  for (int i = 0; i < c->producers; i++) {
    mp_args *a;
    mp_process_opts o = {NULL, 0, 0, MP_START_FORK, 0};
    if (mp_args_create(&a) || mp_args_add_queue(a, q) || mp_args_add_int(a, i) ||
        mp_args_add_int(a, c->count) || mp_args_add_int(a, (int64_t)c->size) ||
        mp_process_create(&p[i], queue_producer, a, &o) || mp_process_start(p[i]))
      exit(4);
    mp_args_free(a);
  }
  for (uint64_t i = 0; i < (uint64_t)c->count * c->producers; i++) {
    void *m;
    size_t len;
    if (mp_queue_get(q, &m, &len, MP_FOREVER) != 0)
      exit(5);
    verify(&v, m, len);
    mp_free(m);
  }
  for (int i = 0; i < c->producers; i++) {
    int code = -1;
    mp_process_join(p[i], MP_FOREVER);
    mp_process_exitcode(p[i], &code);
    mp_process_free(p[i]);
    if (code != 0)
      exit(6);
  }
  mp_queue_free(q);
  return rate(&v);
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

/* Copies n bytes out of the stream; large reads go straight to dst. */
static void read_exact(struct reader *r, unsigned char *dst, size_t n) {
  while (n > 0) {
    if (r->at == r->len) {
      if (n >= sizeof r->buf) {
        ssize_t got = read(r->fd, dst, n);
        if (got <= 0)
          exit(7);
        dst += got, n -= (size_t)got;
        continue;
      }
      ssize_t got = read(r->fd, r->buf, sizeof r->buf);
      if (got <= 0)
        exit(7);
      r->at = 0, r->len = (size_t)got;
    }
    size_t k = r->len - r->at < n ? r->len - r->at : n;
    memcpy(dst, r->buf + r->at, k);
    r->at += k, dst += k, n -= k;
  }
}

static double run_socketpair(const struct bench_case *c) {
  int sv[2];
  if (c->producers != 1 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    unsigned char *frame = calloc(1, c->size + 4);
    uint32_t len = (uint32_t)c->size;
    memcpy(frame, &len, 4);
    for (uint32_t s = 0; s < c->count; s++) {
      make(frame + 4, c->size, 0, s);
      write_all(sv[1], frame, c->size + 4);
    }
    _exit(0);
  }
  close(sv[1]);
  struct reader *r = calloc(1, sizeof *r);
  unsigned char *m = malloc(c->size);
  struct verifier v = {{0}, 1, c->size, 0, 0, 0};
  r->fd = sv[0];
  for (uint32_t i = 0; i < c->count; i++) {
    uint32_t len;
    read_exact(r, (unsigned char *)&len, 4);
    if (len != c->size)
      exit(7);
    read_exact(r, m, len);
    verify(&v, m, len);
  }
  int status;
  waitpid(pid, &status, 0);
  close(sv[0]);
  free(r);
  free(m);
  return rate(&v);
}

/* ---- ZeroMQ PUSH/PULL over ipc:// ------------------------------------------------------- */

#ifdef MP_HAVE_ZMQ
static double run_zmq(const struct bench_case *c) {
  char ep[64];
  snprintf(ep, sizeof ep, "ipc:///tmp/mp-bench-queue-%d.ipc", (int)getpid());
  void *ctx = zmq_ctx_new(), *pull = zmq_socket(ctx, ZMQ_PULL);
  if (zmq_bind(pull, ep) != 0)
    return -1;
  pid_t pids[8];
  for (int i = 0; i < c->producers; i++) {
    if ((pids[i] = fork()) == 0) {
      void *cx = zmq_ctx_new(), *push = zmq_socket(cx, ZMQ_PUSH);
      unsigned char *buf = calloc(1, c->size);
      if (zmq_connect(push, ep) != 0)
        _exit(2);
      for (uint32_t s = 0; s < c->count; s++) {
        make(buf, c->size, (uint32_t)i, s);
        if (zmq_send(push, buf, c->size, 0) != (int)c->size)
          _exit(2);
      }
      zmq_close(push); /* lingers until everything is delivered */
      zmq_ctx_term(cx);
      _exit(0);
    }
  }
  struct verifier v = {{0}, c->producers, c->size, 0, 0, 0};
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  for (uint64_t i = 0; i < (uint64_t)c->count * c->producers; i++) {
    if (zmq_msg_recv(&msg, pull, 0) < 0)
      exit(8);
    verify(&v, zmq_msg_data(&msg), zmq_msg_size(&msg));
  }
  zmq_msg_close(&msg);
  for (int i = 0; i < c->producers; i++)
    waitpid(pids[i], NULL, 0);
  zmq_close(pull);
  zmq_ctx_term(ctx);
  unlink(ep + strlen("ipc://"));
  return rate(&v);
}
#endif

/* The machine is shared: the C peers are cheap enough to take the median of 3 runs. */
static double median3(double (*run)(const struct bench_case *), const struct bench_case *c) {
  double v[3] = {run(c), run(c), run(c)};
  return bench_median(v, 3);
}

/* ---- Python ------------------------------------------------------------------------------ */

static double run_python(const struct bench_case *c) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "python3 %s/bench_queue.py %zu %u %d", MP_BENCH_DIR, c->size,
           c->py_count, c->producers);
  char *out = bench_capture(cmd);
  double r = out ? bench_field(out, "msgs_per_s") : -1;
  free(out);
  return r;
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct bench_case cases[] = {
      {"1->1 64 B", 64, 1, 2000000, 400000},
      {"1->1 4 KiB", 4096, 1, 300000, 200000},
      {"1->1 1 MiB", 1 << 20, 1, 2000, 2000},
      {"4->1 64 B", 64, 4, 500000, 100000},
  };
  double r[4][4]; /* queue, socketpair, zmq, python: messages per second */
  if (argc > 1 && strcmp(argv[1], "--queue-only") == 0) { /* for tuning the queue alone */
    for (int i = 0; i < 4; i++)
      printf("%-12s mp_queue %.0f messages/s\n", cases[i].name, run_queue(&cases[i]));
    return 0;
  }
  printf("%-12s %14s %14s %14s %14s   (messages/s; MB/s for 1 MiB)\n", "case", "mp_queue",
         "socketpair", "zeromq", "python Queue");
  for (int i = 0; i < 4; i++) {
    const struct bench_case *c = &cases[i];
    r[i][0] = median3(run_queue, c);
    r[i][1] = median3(run_socketpair, c);
#ifdef MP_HAVE_ZMQ
    r[i][2] = median3(run_zmq, c);
#else
    r[i][2] = -1;
#endif
    r[i][3] = run_python(c);
    double scale = c->size >= (1 << 20) ? (double)c->size / 1e6 : 1;
    printf("%-12s", c->name);
    for (int k = 0; k < 4; k++)
      printf(r[i][k] > 0 ? " %14.0f" : " %14s", r[i][k] > 0 ? r[i][k] * scale : 0, "-");
    printf("\n");
  }
#ifndef MP_HAVE_ZMQ
  printf("ZeroMQ not measured: install libzmq3-dev and rebuild\n");
#endif
  for (int i = 0; i < 4; i++) {
    printf("%-12s mp_queue/python %.1fx  mp_queue/socketpair %.2fx  mp_queue/zeromq %.2fx\n",
           cases[i].name, r[i][0] / r[i][3], r[i][1] > 0 ? r[i][0] / r[i][1] : 0,
           r[i][2] > 0 ? r[i][0] / r[i][2] : 0);
  }
  if (r[0][3] <= 0 || r[1][3] <= 0 || r[3][3] <= 0) {
    printf("Python peer did not run\n");
    return 1;
  }
  bench_target("queue_64B_vs_python", r[0][0] / r[0][3], ">=", 10);
  bench_target("queue_4KiB_vs_python", r[1][0] / r[1][3], ">=", 10);
  bench_target("queue_4to1_64B_vs_python", r[3][0] / r[3][3], ">=", 10);
  bench_target("queue_1MiB_vs_socketpair", r[2][0] / r[2][1], ">=", 0.7);
  return 0;
}
