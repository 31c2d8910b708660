/* Pipes and connections in one process: framing, sizes, timeouts, closes, bad prefixes,
 * mp_wait over many connections, and exporting a connection for a child. A writer
 * thread feeds messages larger than the OS pipe buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "xfer.h"
#include "buf.h"
#include "connection.h"
#include "platform.h"

#ifdef _WIN32
#  include <windows.h>
typedef HANDLE thread_t;
#else
#  include <pthread.h>
#  include <signal.h>
#  include <sys/syscall.h>
#  include <sys/wait.h>
#  include <time.h>
#  include <unistd.h>
typedef pthread_t thread_t;
#endif

/* ---- a minimal thread for the writer side ---------------------------------------------- */

typedef struct job {
  void (*fn)(struct job *);
  mp_conn *conn;
  size_t *sizes;
  size_t nsizes;
  int delay_ms;
  int rc;
} job;

#ifdef _WIN32
static DWORD WINAPI thread_main(LPVOID arg) {
  job *j = arg;
  j->fn(j);
  return 0;
}
static void start_job(thread_t *t, job *j) {
  *t = CreateThread(NULL, 0, thread_main, j, 0, NULL);
  assert_non_null(*t);
}
static void join_job(thread_t t) {
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
}
#else
static void *thread_main(void *arg) {
  job *j = arg;
  j->fn(j);
  return NULL;
}
static void start_job(thread_t *t, job *j) {
  assert_int_equal(pthread_create(t, NULL, thread_main, j), 0);
}
static void join_job(thread_t t) { pthread_join(t, NULL); }
#endif

/* The byte at offset i of a message of n bytes: differs per message and per position. */
static unsigned char pattern(size_t n, size_t i) { return (unsigned char)((i * 31u + n) & 0xff); }

static unsigned char *make_message(size_t n) {
  unsigned char *p = malloc(n ? n : 1);
  assert_non_null(p);
  for (size_t i = 0; i < n; i++)
    p[i] = pattern(n, i);
  return p;
}

static void send_sizes(job *j) {
  if (j->delay_ms)
    mp_sleep_ms(j->delay_ms);
  for (size_t k = 0; k < j->nsizes && j->rc == 0; k++) {
    unsigned char *m = make_message(j->sizes[k]);
    j->rc = mp_conn_send(j->conn, m, j->sizes[k]);
    free(m);
  }
}

static void expect_message(mp_conn *c, size_t n, int timeout_ms) {
  void *buf = NULL;
  size_t len = 12345;
  assert_mp_ok(mp_conn_recv(c, &buf, &len, timeout_ms));
  assert_non_null(buf);
  assert_int_equal(len, n);
  const unsigned char *p = buf;
  for (size_t i = 0; i < n; i++) {
    if (p[i] != pattern(n, i))
      fail_msg("message of %llu bytes differs at %llu", (unsigned long long)n,
               (unsigned long long)i);
  }
  mp_free(buf);
}

/* Writes raw bytes straight to the channel, bypassing the framing. */
static void raw_write(mp_conn *c, const void *data, size_t len) {
  mp_plat_buf b = {data, len};
  assert_mp_ok(mp_plat_chan_write(mp__conn_chan(c), &b, 1));
}

static void expect_message_raw(mp_conn *c, const char *want, size_t n) {
  void *buf;
  size_t len;
  assert_mp_ok(mp_conn_recv(c, &buf, &len, 1000));
  assert_int_equal(len, n);
  assert_memory_equal(buf, want, n);
  mp_free(buf);
}

static void expect_error_mentions(const char *needle) {
  if (strstr(mp_last_error(), needle) == NULL)
    fail_msg("error \"%s\" lacks \"%s\"", mp_last_error(), needle);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void round_trips_of_every_size(void **state) {
  (void)state;
  size_t sizes[] = {0, 1, 100, 16385, (size_t)1 << 20, (size_t)64 << 20, 0, 3};
  size_t n = sizeof sizes / sizeof sizes[0];
  for (int duplex = 1; duplex >= 0; duplex--) {
    mp_conn *a, *b;
    assert_mp_ok(mp_pipe(&a, &b, duplex));
    job j = {send_sizes, b, sizes, n, 0, 0};
    thread_t t;
    start_job(&t, &j);
    for (size_t k = 0; k < n; k++)
      expect_message(a, sizes[k], MP_FOREVER);
    join_job(t);
    assert_mp_ok(j.rc);
    mp_conn_free(a);
    mp_conn_free(b);
  }
}

static void duplex_works_both_ways(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_true(mp_conn_readable(a) && mp_conn_writable(a));
  assert_true(mp_conn_readable(b) && mp_conn_writable(b));
  for (int round = 0; round < 3; round++) {
    unsigned char *m = make_message(40 + (size_t)round);
    assert_mp_ok(mp_conn_send(a, m, 40 + (size_t)round));
    assert_mp_ok(mp_conn_send(b, m, 40 + (size_t)round));
    free(m);
    expect_message(b, 40 + (size_t)round, 1000);
    expect_message(a, 40 + (size_t)round, 1000);
  }
  mp_conn_free(a);
  mp_conn_free(b);
}

static void one_way_pipe_enforces_direction(void **state) {
  (void)state;
  mp_conn *r, *w;
  assert_mp_ok(mp_pipe(&r, &w, 0));
  assert_true(mp_conn_readable(r));
  assert_false(mp_conn_writable(r));
  assert_true(mp_conn_writable(w));
  assert_false(mp_conn_readable(w));
  assert_mp(MP_EINVAL, mp_conn_send(r, "x", 1));
  expect_error_mentions("read-only");
  void *buf;
  size_t len;
  assert_mp(MP_EINVAL, mp_conn_recv(w, &buf, &len, 0));
  expect_error_mentions("write-only");
  assert_mp(MP_EINVAL, mp_conn_poll(w, 0));
  mp_waitable wt = mp_waitable_conn(w);
  assert_mp(MP_EINVAL, mp_wait(&wt, 1, 0));
  /* Both ends still work after the refusals. */
  assert_mp_ok(mp_conn_send(w, "hi", 2));
  assert_mp_ok(mp_conn_recv(r, &buf, &len, 1000));
  assert_int_equal(len, 2);
  assert_memory_equal(buf, "hi", 2);
  mp_free(buf);
  mp_conn_free(r);
  mp_conn_free(w);
}

static void recv_timeout_consumes_nothing(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  void *buf = NULL;
  size_t len;
  uint64_t t0 = mp_monotonic_ns();
  assert_mp(MP_ETIMEDOUT, mp_conn_recv(a, &buf, &len, 60));
  uint64_t waited = mp_monotonic_ns() - t0;
  assert_true(waited >= 55000000u);
  assert_true(waited < 3000000000u);
  assert_null(buf);
  assert_mp(MP_ETIMEDOUT, mp_conn_recv(a, &buf, &len, 0));
  unsigned char *m = make_message(77);
  assert_mp_ok(mp_conn_send(b, m, 77));
  free(m);
  expect_message(a, 77, 0 + 1000);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void timeout_mid_frame_keeps_framing(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  unsigned char *m = make_message(10);
  const unsigned char hdr[4] = {0, 0, 0, 10};
  void *buf;
  size_t len;
  /* Half a header, then the rest of it and part of the body, then the rest. */
  raw_write(b, hdr, 2);
  assert_mp(MP_ETIMEDOUT, mp_conn_recv(a, &buf, &len, 30));
  raw_write(b, hdr + 2, 2);
  raw_write(b, m, 4);
  assert_mp(MP_ETIMEDOUT, mp_conn_recv(a, &buf, &len, 30));
  assert_int_equal(mp_conn_poll(a, 0), 0);
  /* A connection mid-message cannot be handed to a child. */
  mp__xfer x;
  assert_mp(MP_ESTATE, mp__conn_xfer.export_obj(a, &x));
  raw_write(b, m + 4, 6);
  free(m);
  m = make_message(5);
  assert_mp_ok(mp_conn_send(b, m, 5));
  free(m);
  expect_message(a, 10, 1000);
  expect_message(a, 5, 1000);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void truncated_frame_then_close_is_broken(void **state) {
  (void)state;
  for (int forever = 0; forever <= 1; forever++) {
    mp_conn *a, *b;
    assert_mp_ok(mp_pipe(&a, &b, 1));
    const unsigned char hdr[4] = {0, 0, 0, 100};
    raw_write(b, hdr, 4);
    raw_write(b, "0123456789", 10);
    mp_conn_free(b);
    void *buf;
    size_t len;
    assert_mp(MP_EBROKEN, mp_conn_recv(a, &buf, &len, forever ? MP_FOREVER : 1000));
    expect_error_mentions("middle of a message");
    /* The partial message is gone; what is left is a clean end. */
    assert_mp(MP_EEOF, mp_conn_recv(a, &buf, &len, MP_FOREVER));
    mp_conn_free(a);
  }
}

/* A header announcing a large message costs memory only as its bytes arrive (a peer's four
 * bytes used to make the reader allocate the whole announced size at once). */
static void announced_length_is_not_allocated_up_front(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_mp_ok(mp_conn_set_max_message(a, (size_t)512 << 20));
  size_t before = mp_test_heap_in_use();
  const unsigned char hdr[4] = {0x10, 0, 0, 0}; /* 256 MiB */
  raw_write(b, hdr, 4);
  raw_write(b, "0123456789", 10);
  void *buf;
  size_t len;
  assert_mp(MP_ETIMEDOUT, mp_conn_recv(a, &buf, &len, 50));
  size_t grown = mp_test_heap_in_use() - before;
  printf("heap grew by %zu bytes for a header of 256 MiB and 10 bytes\n", grown);
  assert_true(grown < ((size_t)1 << 20));
  /* It takes the bytes that arrive (less than a pipe buffer: the write never waits). */
  size_t chunk = (size_t)32 << 10;
  char *big = calloc(1, chunk);
  raw_write(b, big, chunk);
  assert_mp(MP_ETIMEDOUT, mp_conn_recv(a, &buf, &len, 50));
  free(big);
  mp_conn_free(b);
  assert_mp(MP_EBROKEN, mp_conn_recv(a, &buf, &len, 1000));
  mp_conn_free(a);
}

static void clean_close_is_eof(void **state) {
  (void)state;
  for (int duplex = 1; duplex >= 0; duplex--) {
    mp_conn *a, *b;
    assert_mp_ok(mp_pipe(&a, &b, duplex));
    unsigned char *m = make_message(9);
    assert_mp_ok(mp_conn_send(b, m, 9));
    free(m);
    assert_mp_ok(mp_conn_close(b));
    assert_mp_ok(mp_conn_close(b)); /* twice is harmless */
    expect_message(a, 9, MP_FOREVER);
    void *buf;
    size_t len;
    assert_mp(MP_EEOF, mp_conn_recv(a, &buf, &len, MP_FOREVER));
    assert_mp(MP_EEOF, mp_conn_recv(a, &buf, &len, 100));
    mp_conn_free(a);
    mp_conn_free(b);
  }
}

static void oversized_prefix_is_refused_and_skipped(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_int_equal(mp_conn_max_message(a), MP_CONN_DEFAULT_MAX_MESSAGE);
  void *buf = NULL;
  size_t len;
  /* 2 GiB - 1 announced against the default 256 MiB: refused from the prefix alone. */
  const unsigned char big[4] = {0x7f, 0xff, 0xff, 0xff};
  raw_write(b, big, 4);
  assert_mp(MP_EPROTO, mp_conn_recv(a, &buf, &len, 1000));
  expect_error_mentions("2147483647 bytes exceeds the connection's maximum of 268435456");
  assert_null(buf);
  mp_conn_free(a);
  mp_conn_free(b);

  /* A too large message is skipped unread; the next one arrives intact. */
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_mp_ok(mp_conn_set_max_message(a, 16));
  unsigned char *m = make_message(100);
  assert_mp_ok(mp_conn_send(b, m, 100));
  free(m);
  m = make_message(16);
  assert_mp_ok(mp_conn_send(b, m, 16));
  free(m);
  assert_mp(MP_EPROTO, mp_conn_recv(a, &buf, &len, 1000));
  expect_error_mentions("100 bytes exceeds");
  expect_message(a, 16, 1000);
  /* A terabyte announced in the 8-byte form: refused, never allocated (ASan would abort). */
  const unsigned char tera[12] = {0xff, 0xff, 0xff, 0xff, 0, 0, 1, 0, 0, 0, 0, 0};
  raw_write(b, tera, sizeof tera);
  assert_mp(MP_EPROTO, mp_conn_recv(a, &buf, &len, 1000));
  expect_error_mentions("1099511627776 bytes");
  /* The peer then vanishes in the middle of that message. */
  mp_conn_free(b);
  assert_mp(MP_EBROKEN, mp_conn_recv(a, &buf, &len, 1000));
  mp_conn_free(a);
}

static void negative_prefix_is_a_protocol_error(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  const unsigned char neg[4] = {0xff, 0xff, 0xff, 0xfe};
  raw_write(b, neg, 4);
  raw_write(b, "junk", 4);
  void *buf;
  size_t len;
  assert_mp(MP_EPROTO, mp_conn_recv(a, &buf, &len, 1000));
  expect_error_mentions("-2");
  /* Message boundaries are lost: every later receive says so instead of reading junk. */
  assert_mp(MP_EPROTO, mp_conn_recv(a, &buf, &len, 1000));
  expect_error_mentions("lost");
  mp_conn_free(a);
  mp_conn_free(b);
}

static void long_form_header_is_parsed(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  /* Python accepts the -1 + 8-byte form for any length; so do we. */
  const unsigned char hdr[12] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5};
  raw_write(b, hdr, sizeof hdr);
  raw_write(b, "hello", 5);
  const unsigned char empty[12] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
  raw_write(b, empty, sizeof empty);
  void *buf;
  size_t len;
  assert_mp_ok(mp_conn_recv(a, &buf, &len, 1000));
  assert_int_equal(len, 5);
  assert_memory_equal(buf, "hello", 5);
  mp_free(buf);
  assert_mp_ok(mp_conn_recv(a, &buf, &len, 1000));
  assert_int_equal(len, 0);
  assert_non_null(buf);
  mp_free(buf);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void short_form_header_is_what_we_send(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_mp_ok(mp_conn_send(b, "abc", 3));
  unsigned char raw[7];
  size_t got = 0;
  while (got < sizeof raw) {
    size_t n;
    assert_mp_ok(mp_plat_chan_read(mp__conn_chan(a), raw + got, sizeof raw - got, 1000, &n));
    got += n;
  }
  const unsigned char want[7] = {0, 0, 0, 3, 'a', 'b', 'c'};
  assert_memory_equal(raw, want, sizeof want);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void send_to_closed_peer_is_an_error_not_a_signal(void **state) {
  (void)state;
#ifndef _WIN32
  struct sigaction before, after;
  sigaction(SIGPIPE, NULL, &before);
#endif
  for (int duplex = 1; duplex >= 0; duplex--) {
    mp_conn *r, *w;
    assert_mp_ok(mp_pipe(&r, &w, duplex));
    mp_conn_free(r);
    unsigned char *m = make_message(1 << 20);
    int rc = mp_conn_send(w, m, 1 << 20);
    free(m);
    assert_mp(MP_EBROKEN, rc);
    assert_mp(MP_EBROKEN, mp_conn_send(w, "x", 1));
    mp_conn_free(w);
  }
#ifndef _WIN32
  /* The disposition is untouched and no SIGPIPE is left pending for the thread. */
  sigaction(SIGPIPE, NULL, &after);
  assert_true(before.sa_handler == after.sa_handler);
  sigset_t pending;
  sigpending(&pending);
  assert_false(sigismember(&pending, SIGPIPE));
#endif
}

#define NCONN 100

static int is_chosen(int i) { return i % 7 == 3; }

static void wait_reports_exactly_the_ready_connections(void **state) {
  (void)state;
  mp_conn *a[NCONN], *b[NCONN];
  mp_waitable w[NCONN];
  int chosen = 0;
  for (int i = 0; i < NCONN; i++) {
    assert_mp_ok(mp_pipe(&a[i], &b[i], i % 2));
    w[i] = mp_waitable_conn(a[i]);
  }
  assert_mp(MP_ETIMEDOUT, mp_wait(w, NCONN, 30));
  for (int i = 0; i < NCONN; i++) {
    if (is_chosen(i)) {
      assert_mp_ok(mp_conn_send(b[i], "m", 1));
      chosen++;
    }
  }
  assert_mp(chosen, mp_wait(w, NCONN, MP_FOREVER));
  for (int i = 0; i < NCONN; i++)
    assert_int_equal(w[i].ready, is_chosen(i));
  /* Waiting consumed nothing: each chosen connection still has its message. */
  assert_mp(chosen, mp_wait(w, NCONN, 0));
  for (int i = 0; i < NCONN; i++) {
    if (is_chosen(i)) {
      void *buf;
      size_t len;
      assert_mp_ok(mp_conn_recv(a[i], &buf, &len, 0));
      mp_free(buf);
    }
  }
  assert_mp(MP_ETIMEDOUT, mp_wait(w, NCONN, 0));
  /* A peer that closes makes its end ready (the receive will say EOF). */
  mp_conn_close(b[97]);
  assert_mp(1, mp_wait(w, NCONN, 1000));
  assert_true(w[97].ready);
  for (int i = 0; i < NCONN; i++) {
    mp_conn_free(a[i]);
    mp_conn_free(b[i]);
  }
}

static void wait_wakes_when_a_message_arrives_later(void **state) {
  (void)state;
  mp_conn *a[NCONN], *b[NCONN];
  mp_waitable w[NCONN];
  for (int i = 0; i < NCONN; i++) {
    assert_mp_ok(mp_pipe(&a[i], &b[i], 1));
    w[i] = mp_waitable_conn(a[i]);
  }
  /* The last group of handles: on Windows it sits in a helper thread's wait. */
  size_t one = 7;
  job j = {send_sizes, b[90], &one, 1, 50, 0};
  thread_t t;
  start_job(&t, &j);
  assert_mp(1, mp_wait(w, NCONN, MP_FOREVER));
  join_job(t);
  assert_mp_ok(j.rc);
  for (int i = 0; i < NCONN; i++)
    assert_int_equal(w[i].ready, i == 90);
  expect_message(a[90], 7, 0);
  for (int i = 0; i < NCONN; i++) {
    mp_conn_free(a[i]);
    mp_conn_free(b[i]);
  }
}

static void wait_times_out(void **state) {
  (void)state;
  mp_conn *a[3], *b[3];
  mp_waitable w[3];
  for (int i = 0; i < 3; i++) {
    assert_mp_ok(mp_pipe(&a[i], &b[i], 1));
    w[i] = mp_waitable_conn(a[i]);
    w[i].ready = 1;
  }
  uint64_t t0 = mp_monotonic_ns();
  assert_mp(MP_ETIMEDOUT, mp_wait(w, 3, 50));
  uint64_t waited = mp_monotonic_ns() - t0;
  assert_true(waited >= 45000000u && waited < 3000000000u);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(w[i].ready, 0);
    mp_conn_free(a[i]);
    mp_conn_free(b[i]);
  }
}

static void wait_accepts_a_connection_listed_twice(void **state) {
  (void)state;
  mp_conn *a, *b, *c, *d;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_mp_ok(mp_pipe(&c, &d, 1));
  mp_waitable w[4] = {mp_waitable_conn(a), mp_waitable_conn(c), mp_waitable_conn(a),
                      mp_waitable_conn(c)};
  assert_mp(MP_ETIMEDOUT, mp_wait(w, 4, 20));
  assert_mp_ok(mp_conn_send(d, "x", 1));
  assert_mp(2, mp_wait(w, 4, 1000));
  assert_int_equal(w[0].ready, 0);
  assert_int_equal(w[1].ready, 1);
  assert_int_equal(w[2].ready, 0);
  assert_int_equal(w[3].ready, 1);
  /* Waiting left both connections intact: the message is still there, a still idle. */
  expect_message_raw(c, "x", 1);
  assert_int_equal(mp_conn_poll(a, 0), 0);
  mp_conn_free(a);
  mp_conn_free(b);
  mp_conn_free(c);
  mp_conn_free(d);
}

/* Something that becomes ready when it exits, as a process handle does: a child blocked
 * on a pipe (its pidfd) on Linux, a thread blocked on an event (its handle) on Windows. */
typedef struct exiter {
  mp_plat_handle handle;
#ifdef _WIN32
  HANDLE release;
#else
  int release_fd;
  pid_t pid;
#endif
} exiter;

#ifdef _WIN32
static DWORD WINAPI exiter_main(LPVOID arg) {
  WaitForSingleObject((HANDLE)arg, INFINITE);
  return 0;
}
static void exiter_start(exiter *e) {
  e->release = CreateEventW(NULL, TRUE, FALSE, NULL);
  HANDLE t = CreateThread(NULL, 0, exiter_main, e->release, 0, NULL);
  assert_non_null(t);
  e->handle = (mp_plat_handle)t;
}
static void exiter_release(exiter *e) { SetEvent(e->release); }
static void exiter_finish(exiter *e) {
  CloseHandle((HANDLE)e->handle);
  CloseHandle(e->release);
}
#else
static void exiter_start(exiter *e) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  e->pid = fork();
  assert_true(e->pid >= 0);
  if (e->pid == 0) {
    char c;
    close(fds[1]);
    while (read(fds[0], &c, 1) != 0) {
    }
    _exit(0);
  }
  close(fds[0]);
  e->release_fd = fds[1];
  int pidfd = (int)syscall(SYS_pidfd_open, e->pid, 0);
  assert_true(pidfd >= 0);
  e->handle = (mp_plat_handle)pidfd;
}
static void exiter_release(exiter *e) { close(e->release_fd); }
static void exiter_finish(exiter *e) {
  int status;
  waitpid(e->pid, &status, 0);
  close((int)e->handle);
}
#endif

static void platform_wait_covers_process_handles(void **state) {
  (void)state;
  enum { N = 70, PROC = 65 };
  mp_conn *a[N], *b[N];
  mp_plat_waitsrc src[N + 1];
  exiter e;
  exiter_start(&e);
  for (int i = 0; i < N; i++) {
    assert_mp_ok(mp_pipe(&a[i], &b[i], 1));
  }
  /* The process sits beyond the first 64 handles (a helper thread's group on Windows). */
  for (int i = 0, k = 0; i <= N; i++) {
    src[i].chan = i == PROC ? NULL : mp__conn_chan(a[k++]);
    src[i].proc = i == PROC ? e.handle : MP_PLAT_INVALID;
  }
  assert_mp(MP_ETIMEDOUT, mp_plat_wait_many(src, N + 1, 20));
  exiter_release(&e);
  assert_mp(1, mp_plat_wait_many(src, N + 1, MP_FOREVER));
  for (int i = 0; i <= N; i++)
    assert_int_equal(src[i].ready, i == PROC);
  /* An exited process stays ready, alongside a connection with data. */
  assert_mp_ok(mp_conn_send(b[3], "z", 1));
  assert_mp(2, mp_plat_wait_many(src, N + 1, 1000));
  assert_true(src[3].ready && src[PROC].ready);
  exiter_finish(&e);
  for (int i = 0; i < N; i++) {
    mp_conn_free(a[i]);
    mp_conn_free(b[i]);
  }
}

static void poll_reports_data_and_eof_without_consuming(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_int_equal(mp_conn_poll(a, 0), 0);
  assert_int_equal(mp_conn_poll(a, 20), 0);
  assert_mp_ok(mp_conn_send(b, "ping", 4));
  assert_int_equal(mp_conn_poll(a, 1000), 1);
  assert_int_equal(mp_conn_poll(a, 0), 1);
  void *buf;
  size_t len;
  assert_mp_ok(mp_conn_recv(a, &buf, &len, 0));
  assert_int_equal(len, 4);
  mp_free(buf);
  assert_int_equal(mp_conn_poll(a, 0), 0);
  mp_conn_close(b);
  assert_int_equal(mp_conn_poll(a, MP_FOREVER), 1);
  assert_mp(MP_EEOF, mp_conn_recv(a, &buf, &len, 0));
  mp_conn_free(a);
  mp_conn_free(b);
}

static void bad_arguments_and_closed_connections(void **state) {
  (void)state;
  mp_conn *a, *b;
  void *buf;
  size_t len;
  assert_mp(MP_EINVAL, mp_pipe(NULL, &b, 1));
  assert_mp(MP_EINVAL, mp_pipe(&a, NULL, 1));
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_mp(MP_EINVAL, mp_conn_send(NULL, "x", 1));
  assert_mp(MP_EINVAL, mp_conn_send(a, NULL, 1));
  assert_mp_ok(mp_conn_send(a, NULL, 0));
  assert_mp(MP_EINVAL, mp_conn_recv(NULL, &buf, &len, 0));
  assert_mp(MP_EINVAL, mp_conn_recv(b, NULL, &len, 0));
  assert_mp(MP_EINVAL, mp_conn_recv(b, &buf, NULL, 0));
  assert_mp(MP_EINVAL, mp_conn_poll(NULL, 0));
  assert_mp(MP_EINVAL, mp_conn_set_max_message(a, 0));
  assert_mp(MP_EINVAL, mp_conn_set_max_message(NULL, 5));
  assert_mp(MP_EINVAL, mp_conn_close(NULL));
  assert_mp(MP_EINVAL, mp_conn_send_value(a, NULL));
  assert_mp(MP_EINVAL, mp_conn_recv_value(b, NULL, 0));
  assert_mp(MP_EINVAL, mp_wait(NULL, 1, 0));
  mp_waitable none[1] = {mp_waitable_conn(NULL)};
  assert_mp(MP_EINVAL, mp_wait(none, 0, 0));
  assert_mp(MP_EINVAL, mp_wait(none, 1, 0));
  none[0] = mp_waitable_process(NULL);
  assert_mp(MP_EINVAL, mp_wait(none, 1, 0));
  none[0].kind = 99;
  assert_mp(MP_EINVAL, mp_wait(none, 1, 0));
  assert_false(mp_conn_readable(NULL));
  assert_int_equal(mp_conn_max_message(NULL), 0);
  mp_conn_free(NULL);
  /* The empty message sent above with a NULL buffer is still received. */
  assert_mp_ok(mp_conn_recv(b, &buf, &len, 1000));
  assert_int_equal(len, 0);
  mp_free(buf);
  assert_mp_ok(mp_conn_close(a));
  assert_mp(MP_ECLOSED, mp_conn_send(a, "x", 1));
  expect_error_mentions("closed");
  assert_mp(MP_ECLOSED, mp_conn_recv(a, &buf, &len, 0));
  assert_mp(MP_ECLOSED, mp_conn_poll(a, 0));
  assert_false(mp_conn_readable(a));
  mp_waitable w = mp_waitable_conn(a);
  assert_mp(MP_ECLOSED, mp_wait(&w, 1, 0));
  mp__xfer x;
  assert_mp(MP_ECLOSED, mp__conn_xfer.export_obj(a, &x));
  assert_null(mp__conn_chan(a));
  mp_conn_free(a);
  mp_conn_free(b);
}

static void values_travel_over_a_connection(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp_value *v = mp_value_tuple();
  assert_mp_ok(mp_value_append(v, mp_value_str("ping")));
  assert_mp_ok(mp_value_append(v, mp_value_int(42)));
  mp_value *l = mp_value_list();
  assert_mp_ok(mp_value_append(l, mp_value_bytes("\0\1\2", 3)));
  assert_mp_ok(mp_value_append(v, l));
  assert_mp_ok(mp_conn_send_value(a, v));
  mp_value *got = NULL;
  assert_mp_ok(mp_conn_recv_value(b, &got, 1000));
  assert_true(mp_value_equal(v, got));
  mp_value_free(got);
  mp_value_free(v);
  /* Bytes that are not MessagePack: a protocol error; the connection stays usable. */
  assert_mp_ok(mp_conn_send(a, "\xc1", 1));
  assert_mp(MP_EPROTO, mp_conn_recv_value(b, &got, 1000));
  assert_mp(MP_ETIMEDOUT, mp_conn_recv_value(b, &got, 0));
  v = mp_value_nil();
  assert_mp_ok(mp_conn_send_value(a, v));
  assert_mp_ok(mp_conn_recv_value(b, &got, 1000));
  assert_int_equal(mp_value_type_of(got), MP_VALUE_NIL);
  mp_value_free(got);
  mp_value_free(v);
  mp_conn_free(a);
  mp_conn_free(b);
}

/* What a spawned child does: the parent exports, the child gets its own handle (here a
 * duplicate made in this process) and imports it into a new connection. */
static void exported_connection_imports_as_a_working_copy(void **state) {
  (void)state;
  for (int duplex = 1; duplex >= 0; duplex--) {
    mp_conn *a, *b;
    assert_mp_ok(mp_pipe(&a, &b, duplex));
    assert_mp_ok(mp_conn_set_max_message(b, 1000));
    mp__xfer x;
    memset(&x, 0, sizeof x);
    assert_int_equal(mp__conn_xfer.id, MP_XFER_CONN);
    assert_mp_ok(mp__conn_xfer.export_obj(b, &x));
    assert_int_equal(x.nhandles, 1);
    assert_true(x.handles[0] == mp_plat_chan_handle(mp__conn_chan(b)));
    assert_mp_ok(mp_plat_handle_dup(x.handles[0], &x.handles[0]));
    void *obj = NULL;
    assert_mp_ok(mp__conn_xfer.import_obj(&x, &obj));
    mp_conn *child = obj;
    assert_int_equal(mp_conn_max_message(child), 1000);
    assert_int_equal(mp_conn_writable(child), 1);
    assert_int_equal(mp_conn_readable(child), duplex);
    /* The original closes; the copy keeps the pipe end alive. */
    mp_conn_free(b);
    assert_mp_ok(mp_conn_send(child, "from child", 10));
    void *buf;
    size_t len;
    assert_mp_ok(mp_conn_recv(a, &buf, &len, 1000));
    assert_int_equal(len, 10);
    mp_free(buf);
    if (duplex) {
      assert_mp_ok(mp_conn_send(a, "to child", 8));
      assert_mp_ok(mp_conn_recv(child, &buf, &len, 1000));
      assert_int_equal(len, 8);
      mp_free(buf);
    }
    mp__conn_xfer.release_imported(child);
    assert_mp(MP_EEOF, mp_conn_recv(a, &buf, &len, 1000));
    mp_conn_free(a);
  }
}

static void malformed_export_record_is_refused(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  mp__xfer x;
  assert_mp_ok(mp__conn_xfer.export_obj(a, &x));
  assert_mp_ok(mp_plat_handle_dup(x.handles[0], &x.handles[0]));
  x.blob[0] = 99; /* unknown version: the handle is closed, not leaked */
  void *obj = NULL;
  assert_mp(MP_EPROTO, mp__conn_xfer.import_obj(&x, &obj));
  assert_null(obj);
  assert_mp(MP_EINVAL, mp__conn_xfer.export_obj(NULL, &x));
  mp_conn_free(a);
  mp_conn_free(b);
}

#ifndef _WIN32
/* ---- EINTR: a signal handler installed without SA_RESTART interrupts blocking calls ------ */

static volatile sig_atomic_t signals_seen;
static void on_usr1(int sig) {
  (void)sig;
  signals_seen++;
}

typedef struct pest {
  pthread_t target;
  mp_conn *conn; /* after the signals: sends a message on it, or drains it if drain */
  int drain;
  size_t len;
  int rc;
} pest;

/* Signals the target thread until its handler ran 5 times while it is blocked, then lets
 * the blocked call finish by sending (or receiving) a message. */
static void *pester(void *arg) {
  pest *p = arg;
  while (signals_seen < 5) {
    pthread_kill(p->target, SIGUSR1);
    mp_sleep_ms(5);
  }
  if (p->drain) {
    void *buf;
    size_t len;
    p->rc = mp_conn_recv(p->conn, &buf, &len, MP_FOREVER);
    if (p->rc == 0) {
      p->len = len;
      mp_free(buf);
    }
  } else {
    unsigned char *m = make_message(p->len);
    p->rc = mp_conn_send(p->conn, m, p->len);
    free(m);
  }
  return NULL;
}

static void run_pestered(pest *p, void (*blocked)(pest *)) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1; /* no SA_RESTART: blocking calls fail with EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, &old);
  signals_seen = 0;
  p->target = pthread_self();
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, pester, p), 0);
  blocked(p);
  pthread_join(t, NULL);
  sigaction(SIGUSR1, &old, NULL);
  assert_true(signals_seen >= 5);
}

static mp_conn *peer_of_test;

static void blocked_recv_forever(pest *p) { expect_message(peer_of_test, p->len, MP_FOREVER); }
static void blocked_recv_timed(pest *p) { expect_message(peer_of_test, p->len, 20000); }
static void blocked_wait(pest *p) {
  (void)p;
  mp_waitable w = mp_waitable_conn(peer_of_test);
  assert_mp(1, mp_wait(&w, 1, MP_FOREVER));
  assert_mp(1, mp_wait(&w, 1, 20000));
}
static void blocked_send(pest *p) {
  unsigned char *m = make_message(p->len);
  assert_mp_ok(mp_conn_send(peer_of_test, m, p->len));
  free(m);
}

static void signals_do_not_break_blocking_calls(void **state) {
  (void)state;
  void (*readers[])(pest *) = {blocked_recv_forever, blocked_recv_timed, blocked_wait};
  for (int duplex = 1; duplex >= 0; duplex--) {
    for (size_t k = 0; k < sizeof readers / sizeof readers[0]; k++) {
      mp_conn *a, *b;
      assert_mp_ok(mp_pipe(&a, &b, duplex));
      peer_of_test = a;
      pest p = {0, b, 0, 3000, 0};
      run_pestered(&p, readers[k]);
      assert_mp_ok(p.rc);
      mp_conn_free(a);
      mp_conn_free(b);
    }
    /* A send far larger than the OS buffer blocks, is interrupted, and still completes. */
    mp_conn *a, *b;
    assert_mp_ok(mp_pipe(&a, &b, duplex));
    peer_of_test = b;
    pest p = {0, a, 1, (size_t)8 << 20, 0};
    run_pestered(&p, blocked_send);
    assert_mp_ok(p.rc);
    assert_int_equal(p.len, (size_t)8 << 20);
    mp_conn_free(a);
    mp_conn_free(b);
  }
}
#endif

/* ---- read-ahead, batches and handles (the pool's worker connections) ------------------ */

static void put_message(mp__buf *b, const char *text) {
  size_t at;
  assert_mp_ok(mp__conn_msg_begin(b, &at));
  assert_mp_ok(mp__buf_put(b, text, strlen(text)));
  assert_mp_ok(mp__conn_msg_end(b, at));
}

/* A batch is ordinary messages; read-ahead serves a burst out of one read, and wait, poll
 * and plain recv see what is buffered. */
static void batches_and_read_ahead(void **state) {
  (void)state;
  mp_conn *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_mp_ok(mp__conn_set_readahead(a));
  mp__buf batch = {0};
  put_message(&batch, "one");
  put_message(&batch, "");
  put_message(&batch, "three");
  assert_mp_ok(mp__conn_send_batch(b, &batch));
  assert_int_equal(batch.len, 0);
  const unsigned char *msg = NULL;
  size_t len = 0;
  assert_mp_ok(mp__conn_recv_borrow(a, &msg, &len, 30000));
  assert_int_equal(len, 3);
  assert_memory_equal(msg, "one", 3);
  assert_int_equal(mp__conn_buffered(a), 1); /* the rest came with the same read */
  assert_int_equal(mp_conn_poll(a, 0), 1);
  mp_waitable w = mp_waitable_conn(a);
  assert_int_equal(mp_wait(&w, 1, 0), 1);
  assert_int_equal(w.ready, 1);
  assert_mp_ok(mp__conn_recv_borrow(a, &msg, &len, 0));
  assert_int_equal(len, 0);
  void *copy = NULL;
  assert_mp_ok(mp_conn_recv(a, &copy, &len, 0)); /* a plain recv takes from the buffer */
  assert_int_equal(len, 5);
  assert_memory_equal(copy, "three", 5);
  mp_free(copy);
  assert_int_equal(mp__conn_buffered(a), 0);
  assert_mp(MP_ETIMEDOUT, mp__conn_recv_borrow(a, &msg, &len, 0));
  /* A connection holding read-ahead bytes cannot be passed to a child. */
  put_message(&batch, "pending");
  put_message(&batch, "more");
  assert_mp_ok(mp__conn_send_batch(b, &batch));
  assert_mp_ok(mp__conn_recv_borrow(a, &msg, &len, 30000));
  mp__xfer x;
  assert_mp(MP_ESTATE, mp__conn_xfer.export_obj(a, &x));
  assert_mp_ok(mp__conn_recv_borrow(a, &msg, &len, 30000));
  assert_memory_equal(msg, "more", 4);
  /* An oversized message is refused and skipped; the next one still comes. */
  assert_mp_ok(mp_conn_set_max_message(a, 8));
  put_message(&batch, "far too long for eight");
  put_message(&batch, "fits");
  assert_mp_ok(mp__conn_send_batch(b, &batch));
  assert_mp(MP_EPROTO, mp__conn_recv_borrow(a, &msg, &len, 30000));
  assert_mp_ok(mp__conn_recv_borrow(a, &msg, &len, 30000));
  assert_int_equal(len, 4);
  /* The peer's close: EOF between messages, EBROKEN in the middle of one. */
  assert_mp_ok(mp_conn_send(b, "x", 1));
  mp_conn_free(b);
  assert_mp_ok(mp__conn_recv_borrow(a, &msg, &len, 30000));
  assert_mp(MP_EEOF, mp__conn_recv_borrow(a, &msg, &len, 30000));
  mp_conn_free(a);
  mp__buf_free(&batch);
}

/* Handles handed to the process at the other end (here: this one) arrive with their
 * message and work there; without them a message naming handles is a protocol error. */
static void handles_go_with_a_batch(void **state) {
  (void)state;
  mp_conn *a, *b, *c, *d;
  assert_mp_ok(mp_pipe(&a, &b, 1));
  assert_mp_ok(mp_pipe(&c, &d, 1));
  assert_mp_ok(mp__conn_accept_handles(a));
#ifdef _WIN32
  mp_plat_handle self = (mp_plat_handle)GetCurrentProcess();
#else
  mp_plat_handle self = MP_PLAT_INVALID; /* not needed where handles go along */
#endif
  mp_plat_handle give = mp_plat_chan_handle(mp__conn_chan(d));
  uint64_t names[1];
  assert_mp_ok(mp__conn_give_handles(b, self, &give, 1, names));
  mp__buf batch = {0};
  put_message(&batch, "here is one");
  assert_mp_ok(mp__conn_send_batch(b, &batch));
  mp_conn_free(d); /* the receiver's copy is its own */
  const unsigned char *msg = NULL;
  size_t len = 0;
  assert_mp_ok(mp__conn_recv_borrow(a, &msg, &len, 30000));
  mp_plat_handle got[2];
  assert_mp_ok(mp__conn_take_handles(a, names, 1, got));
  mp_conn *dd = NULL;
  assert_mp_ok(mp__conn_wrap_handle(got[0], &dd));
  assert_mp_ok(mp_conn_send(dd, "via", 3));
  void *buf = NULL;
  assert_mp_ok(mp_conn_recv(c, &buf, &len, 30000));
  assert_memory_equal(buf, "via", 3);
  mp_free(buf);
  mp_conn_free(dd);
  assert_mp(MP_EEOF, mp_conn_recv(c, &buf, &len, 30000)); /* no copy of d is left */
#ifndef _WIN32
  uint64_t none[1] = {0};
  assert_mp(MP_EPROTO, mp__conn_take_handles(a, none, 1, got)); /* none came */
#endif
  mp__buf_free(&batch);
  mp_conn_free(a);
  mp_conn_free(b);
  mp_conn_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trips_of_every_size),
      cmocka_unit_test(duplex_works_both_ways),
      cmocka_unit_test(one_way_pipe_enforces_direction),
      cmocka_unit_test(recv_timeout_consumes_nothing),
      cmocka_unit_test(timeout_mid_frame_keeps_framing),
      cmocka_unit_test(truncated_frame_then_close_is_broken),
      cmocka_unit_test(announced_length_is_not_allocated_up_front),
      cmocka_unit_test(clean_close_is_eof),
      cmocka_unit_test(oversized_prefix_is_refused_and_skipped),
      cmocka_unit_test(negative_prefix_is_a_protocol_error),
      cmocka_unit_test(long_form_header_is_parsed),
      cmocka_unit_test(short_form_header_is_what_we_send),
      cmocka_unit_test(send_to_closed_peer_is_an_error_not_a_signal),
      cmocka_unit_test(wait_reports_exactly_the_ready_connections),
      cmocka_unit_test(wait_wakes_when_a_message_arrives_later),
      cmocka_unit_test(wait_times_out),
      cmocka_unit_test(wait_accepts_a_connection_listed_twice),
      cmocka_unit_test(platform_wait_covers_process_handles),
      cmocka_unit_test(poll_reports_data_and_eof_without_consuming),
      cmocka_unit_test(bad_arguments_and_closed_connections),
      cmocka_unit_test(values_travel_over_a_connection),
      cmocka_unit_test(exported_connection_imports_as_a_working_copy),
      cmocka_unit_test(malformed_export_record_is_refused),
      cmocka_unit_test(batches_and_read_ahead),
      cmocka_unit_test(handles_go_with_a_batch),
#ifndef _WIN32
      cmocka_unit_test(signals_do_not_break_blocking_calls),
#endif
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
