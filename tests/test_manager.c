/* The network manager: C server and C client over loopback TCP. Values of every type
 * round-trip through a remote queue; two worker processes share tasks; timeouts, full
 * queues, wrong keys and bad arguments give their codes; hostile clients (garbage frames,
 * oversized prefixes, bad pickles, forbidden globals, half frames, handshake floods, a
 * worker killed in a blocked get) never stop the server from serving a good client and
 * never lose an item. get_methods answers for a pickled Token as CPython sends it; keys may
 * hold NUL bytes. test_manager_hostile.c has the larger attacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "connection.h"
#include "pickle.h"
#include "manager.h"
#include "platform.h"
#include "managerutil.h"
#include "testutil.h"

#define KEY "abc"

static mp_manager *serve(const mp_manager_opts *opts) {
  mp_manager *m = NULL;
  assert_mp_ok(mp_manager_create(&m, "127.0.0.1:0", KEY, opts));
  assert_mp_ok(mp_manager_register_queue(m, "get_task_queue", 0));
  assert_mp_ok(mp_manager_register_queue(m, "get_result_queue", 0));
  assert_mp_ok(mp_manager_register_queue(m, "small", 1));
  assert_mp_ok(mp_manager_start(m));
  return m;
}

static mp_queue *remote(mp_manager *m, const char *name, mp_manager_client **c) {
  mp_queue *q = NULL;
  assert_mp_ok(mp_manager_connect(c, mp_manager_address(m), KEY));
  assert_mp_ok(mp_manager_queue(*c, name, &q));
  return q;
}

/* A good client still works: put and get one value through the network. */
static void good_client_works(mp_manager *m) {
  mp_manager_client *c;
  mp_queue *q = remote(m, "get_result_queue", &c);
  mp_test_put_get(q, "still serving");
  mp_queue_free(q);
  mp_manager_disconnect(c);
}

static mp_value *every_type(void) {
  mp_value *t = mp_value_tuple(), *d = mp_value_dict(), *l = mp_value_list();
  mp_value_append(l, mp_value_int(1));
  mp_value_append(l, mp_value_str("two"));
  mp_value_dict_set(d, mp_value_str("k"), l);
  mp_value_dict_set(d, mp_value_int(7), mp_value_nil());
  mp_value_append(t, mp_value_nil());
  mp_value_append(t, mp_value_bool(1));
  mp_value_append(t, mp_value_bool(0));
  mp_value_append(t, mp_value_int(INT64_MIN));
  mp_value_append(t, mp_value_int(INT64_MAX));
  mp_value_append(t, mp_value_int(-5));
  mp_value_append(t, mp_value_double(3.25));
  mp_value_append(t, mp_value_str("h\xc3\xa9llo"));
  mp_value_append(t, mp_value_bytes("\x00\x01\xff", 3));
  mp_value_append(t, d);
  mp_value_append(t, mp_value_tuple());
  return t;
}

static void values_round_trip(void **state) {
  (void)state;
  mp_manager *m = serve(NULL);
  mp_manager_client *c;
  mp_queue *q = remote(m, "get_task_queue", &c);
  mp_value *v = every_type();
  size_t n = v ? 0 : 1;
  mp_value_len(v, &n);
  for (size_t i = 0; i < n; i++) { /* each alone, then the whole tuple */
    mp_value *item, *got = NULL;
    mp_value_at(v, i, &item);
    assert_mp_ok(mp_queue_put_value(q, item, MP_FOREVER));
    assert_mp_ok(mp_queue_get_value(q, &got, 5000));
    assert_true(mp_value_equal(item, got));
    mp_value_free(got);
  }
  mp_value *got = NULL;
  assert_mp_ok(mp_queue_put_value(q, v, 1000));
  assert_mp_ok(mp_queue_get_value(q, &got, 1000));
  assert_true(mp_value_equal(v, got));
  mp_value_free(got);
  /* Raw bytes, and the MessagePack fallback for a non-bytes item. */
  void *buf;
  size_t len;
  assert_mp_ok(mp_queue_put(q, "raw\0bytes", 9, 1000));
  assert_mp_ok(mp_queue_get(q, &buf, &len, 1000));
  assert_int_equal(len, 9);
  assert_memory_equal(buf, "raw\0bytes", 9);
  mp_free(buf);
  assert_mp_ok(mp_queue_put_value(q, v, 1000));
  assert_mp_ok(mp_queue_get(q, &buf, &len, 1000));
  assert_mp_ok(mp_value_decode(buf, len, &got));
  assert_true(mp_value_equal(v, got));
  mp_free(buf);
  mp_value_free(got);
  /* The master's local handle sees the same queue. */
  mp_queue *local;
  assert_mp_ok(mp_manager_local_queue(m, "get_task_queue", &local));
  assert_mp_ok(mp_queue_put_value(local, v, 0));
  size_t qs = 0;
  assert_mp_ok(mp_queue_qsize(q, &qs));
  assert_int_equal(qs, 1);
  assert_int_equal(mp_queue_empty(q), 0);
  assert_mp_ok(mp_queue_get_value(q, &got, 0));
  assert_true(mp_value_equal(v, got));
  assert_int_equal(mp_queue_empty(local), 1);
  mp_value_free(got);
  mp_value_free(v);
  mp_queue_free(local);
  mp_queue_free(q);
  mp_manager_disconnect(c);
  mp_manager_free(m);
}

static void timeouts_and_full(void **state) {
  (void)state;
  mp_manager *m = serve(NULL);
  mp_manager_client *c;
  mp_queue *q = remote(m, "small", &c);
  mp_value *v = NULL;
  uint64_t t0 = mp_plat_monotonic_ns();
  assert_mp(MP_EEMPTY, mp_queue_get_value(q, &v, 200));
  assert_true(mp_plat_monotonic_ns() - t0 >= 200000000u);
  assert_mp(MP_EEMPTY, mp_queue_get_value(q, &v, 0));
  mp_value *one = mp_value_int(1);
  assert_mp_ok(mp_queue_put_value(q, one, 0));
  assert_int_equal(mp_queue_full(q), 1);
  assert_mp(MP_EFULL, mp_queue_put_value(q, one, 0));
  assert_mp(MP_EFULL, mp_queue_put_value(q, one, 100));
  assert_mp(MP_EINVAL, mp_queue_put_value(q, one, -5));
  assert_mp(MP_EINVAL, mp_queue_get_value(q, &v, -2));
  assert_mp(MP_ENOTSUP, mp_queue_close(q));
  assert_mp(MP_ENOTSUP, mp_queue_join(q, 10));
  assert_mp_ok(mp_queue_task_done(q));
  assert_mp(MP_EINVAL, mp_queue_task_done(q)); /* ValueError from the server */
  mp_value_free(one);
  mp_queue_free(q);
  mp_manager_disconnect(c);
  mp_manager_free(m);
}

static void bad_arguments(void **state) {
  (void)state;
  mp_manager *m = NULL;
  mp_manager_client *c = NULL;
  mp_queue *q = NULL;
  assert_mp(MP_EINVAL, mp_manager_create(&m, "127.0.0.1:0", "", NULL));
  assert_mp(MP_EINVAL, mp_manager_create(&m, "127.0.0.1", KEY, NULL));
  assert_mp(MP_EINVAL, mp_manager_create(&m, "127.0.0.1:70000", KEY, NULL));
  assert_mp(MP_EINVAL, mp_manager_create(NULL, "127.0.0.1:0", KEY, NULL));
  mp_manager_opts open = {0};
  open.allow_empty_authkey = 1;
  assert_mp_ok(mp_manager_create(&m, "127.0.0.1:0", "", &open));
  assert_mp_ok(mp_manager_register_queue(m, "q", 0));
  assert_mp(MP_EBUSY, mp_manager_register_queue(m, "q", 0));
  assert_mp(MP_EINVAL, mp_manager_register_queue(m, "", 0));
  assert_mp(MP_ENOENT, mp_manager_local_queue(m, "nope", &q));
  assert_mp_ok(mp_manager_start(m));
  assert_mp(MP_ESTATE, mp_manager_start(m));
  assert_mp(MP_ESTATE, mp_manager_register_queue(m, "late", 0));
  assert_mp_ok(mp_manager_connect(&c, mp_manager_address(m), ""));
  assert_mp(MP_ENOENT, mp_manager_queue(c, "nope", &q));
  assert_mp(MP_EPERM, mp_manager_remote_shutdown(c));
  mp_manager_disconnect(c);
  assert_mp_ok(mp_manager_shutdown(m));
  assert_mp_ok(mp_manager_shutdown(m));
  assert_mp(MP_ESTATE, mp_manager_serve_forever(m));
  mp_manager_free(m);
  m = serve(NULL);
  char addr[80];
  snprintf(addr, sizeof addr, "%s", mp_manager_address(m));
  mp_manager_free(m);
  assert_mp(MP_EOS, mp_manager_connect(&c, addr, KEY)); /* nobody listens any more */
}

static void wrong_key(void **state) {
  (void)state;
  mp_manager *m = serve(NULL);
  mp_manager_client *c = NULL;
  assert_mp(MP_EAUTH, mp_manager_connect(&c, mp_manager_address(m), "abd"));
  assert_null(c);
  good_client_works(m);
  mp_manager_free(m);
}

static void remote_shutdown_when_allowed(void **state) {
  (void)state;
  mp_manager_opts o = {0};
  o.allow_remote_shutdown = 1;
  mp_manager *m = NULL;
  assert_mp_ok(mp_manager_create(&m, "127.0.0.1:0", KEY, &o));
  assert_mp_ok(mp_manager_register_queue(m, "q", 0));
  mp_manager_client *c;
  assert_mp_ok(mp_manager_start(m));
  assert_mp_ok(mp_manager_connect(&c, mp_manager_address(m), KEY));
  assert_mp_ok(mp_manager_remote_shutdown(c));
  assert_mp_ok(mp_manager_shutdown(m)); /* returns once the server has stopped */
  mp_manager_disconnect(c);
  mp_manager_free(m);
}

/* ---- raw clients ------------------------------------------------------------------- */

static mp_conn *raw_connect(mp_manager *m) { return mp_test_mgr_connect(m); }

static mp_conn *raw_authed(mp_manager *m) { return mp_test_mgr_authed(m, KEY, 3); }

/* The server ends the connection (after an optional reply). */
static void expect_closed(mp_conn *c) {
  void *buf;
  size_t len;
  int rc;
  while ((rc = mp_conn_recv(c, &buf, &len, 10000)) == 0)
    mp_free(buf);
  if (rc != MP_EEOF && rc != MP_EBROKEN)
    fail_msg("expected the server to close the connection, got %s: %s", mp_strerror(rc),
             mp_last_error());
  mp_conn_free(c);
}

static void send_raw(mp_conn *c, const void *buf, size_t len) {
  mp_plat_buf b = {buf, len};
  assert_mp_ok(mp_plat_chan_write(mp__conn_chan(c), &b, 1));
}

static void hostile_frames(void **state) {
  (void)state;
  mp_manager *m = serve(NULL);
  /* Before authentication: an oversized prefix, a negative one, a long frame. */
  mp_conn *c = raw_connect(m);
  send_raw(c, "\x7f\xff\xff\xff", 4);
  expect_closed(c);
  c = raw_connect(m);
  send_raw(c, "\xff\xff\xff\xfe", 4);
  expect_closed(c);
  c = raw_connect(m);
  char big[300] = {0};
  assert_mp_ok(mp_conn_send(c, big, sizeof big));
  expect_closed(c);
  /* A garbage handshake answer. */
  c = raw_connect(m);
  assert_mp_ok(mp_conn_send(c, "#CHALLENGE#", 11));
  expect_closed(c);
  good_client_works(m);
  /* After authentication: garbage pickles, a forbidden global, a wrong shape. */
  const char *bad[] = {"garbage!", "\x80\x02\x63posix\nsystem\n\x85.", "\x80\x04K\x01.",
                       "\x80\x04(NN)}t."};
  size_t lens[] = {8, 19, 5, 8};
  for (size_t i = 0; i < 4; i++) {
    c = raw_authed(m);
    assert_mp_ok(mp_conn_send(c, bad[i], lens[i]));
    expect_closed(c);
  }
  /* After authentication: a frame larger than max_message. */
  c = raw_authed(m);
  send_raw(c, "\x7f\xff\xff\xff", 4);
  expect_closed(c);
  good_client_works(m);
  mp_manager_free(m);
}

/* Sends (ident, method, args, kwds) (takes args and kwds) and returns the reply's
 * exception kind: MP_PK_EXC_NONE for '#RETURN', -1 for '#TRACEBACK'. */
static int raw_call(mp_conn *c, const char *ident, const char *method, mp_value *args,
                    mp_value *kwds) {
  char kind[16];
  mp__pk_exc exc;
  mp_test_mgr_send(c, ident, method, args, kwds);
  mp_test_mgr_reply(c, kind, &exc, NULL);
  return strcmp(kind, "#TRACEBACK") == 0 ? -1 : exc.kind;
}

static void server_refuses_bad_timeouts(void **state) {
  (void)state;
  mp_manager *m = serve(NULL);
  /* create by hand to learn the ident, then call get(timeout=-1.0) and get(timeout=nan). */
  mp_conn *c = raw_authed(m);
  mp_value *req = mp_value_tuple(), *args = mp_value_tuple(), *res = NULL;
  mp_value_append(args, mp_value_str("get_task_queue"));
  mp_value_append(req, mp_value_nil());
  mp_value_append(req, mp_value_str("create"));
  mp_value_append(req, args);
  mp_value_append(req, mp_value_dict());
  void *buf;
  size_t len;
  assert_mp_ok(mp__pickle_dumps(req, &buf, &len));
  assert_mp_ok(mp_conn_send(c, buf, len));
  free(buf);
  mp_value_free(req);
  assert_mp_ok(mp_conn_recv(c, &buf, &len, 5000));
  assert_mp_ok(mp__pickle_loads(buf, len, &res, NULL));
  mp_free(buf);
  mp_conn_free(c);
  mp_value *pair, *ident;
  assert_mp_ok(mp_value_at(res, 1, &pair));
  assert_mp_ok(mp_value_at(pair, 0, &ident));
  const char *id;
  assert_mp_ok(mp_value_get_str(ident, &id, NULL));
  c = raw_authed(m);
  req = mp_value_tuple();
  mp_value_append(req, mp_value_nil());
  mp_value_append(req, mp_value_str("accept_connection"));
  args = mp_value_tuple();
  mp_value_append(args, mp_value_str("test|raw"));
  mp_value_append(req, args);
  mp_value_append(req, mp_value_dict());
  assert_mp_ok(mp__pickle_dumps(req, &buf, &len));
  mp_value_free(req);
  assert_mp_ok(mp_conn_send(c, buf, len));
  free(buf);
  assert_mp_ok(mp_conn_recv(c, &buf, &len, 5000));
  mp_free(buf);
  double bad[] = {-1.0, 0.0 / 0.0, 1.0 / 0.0};
  for (int i = 0; i < 3; i++) {
    mp_value *kw = mp_value_dict();
    mp_value_dict_set(kw, mp_value_str("timeout"), mp_value_double(bad[i]));
    uint64_t t0 = mp_plat_monotonic_ns();
    assert_int_equal(raw_call(c, id, "get", mp_value_tuple(), kw), MP_PK_EXC_VALUE);
    assert_true(mp_plat_monotonic_ns() - t0 < 2000000000u);
  }
  /* Python's call rules: TypeError for bad arguments, AttributeError for other methods. */
  mp_value *three = mp_value_tuple(), *kw = mp_value_dict(), *one = mp_value_tuple();
  for (int i = 0; i < 3; i++)
    mp_value_append(three, mp_value_int(i));
  mp_value_dict_set(kw, mp_value_str("colour"), mp_value_int(1));
  mp_value_append(one, mp_value_int(1));
  assert_int_equal(raw_call(c, id, "put", mp_value_tuple(), mp_value_dict()), MP_PK_EXC_TYPE);
  assert_int_equal(raw_call(c, id, "get", three, mp_value_dict()), MP_PK_EXC_TYPE);
  assert_int_equal(raw_call(c, id, "get", mp_value_tuple(), kw), MP_PK_EXC_TYPE);
  assert_int_equal(raw_call(c, id, "qsize", one, mp_value_dict()), MP_PK_EXC_TYPE);
  assert_int_equal(raw_call(c, id, "__del__", mp_value_tuple(), mp_value_dict()),
                   MP_PK_EXC_ATTRIBUTE);
  assert_int_equal(raw_call(c, "nope", "get", mp_value_tuple(), mp_value_dict()), -1);
  mp_conn_free(c);
  mp_value_free(res);
  mp_manager_free(m);
}

static void stalled_and_flooding_clients(void **state) {
  (void)state;
  mp_manager_opts o = {0};
  o.handshake_timeout_ms = 300;
  o.max_connections = 8;
  mp_manager *m = serve(&o);
  /* Half a frame, then silence: the deadline ends it, and others are served meanwhile. */
  mp_conn *stall = raw_connect(m);
  void *buf;
  size_t len;
  assert_mp_ok(mp_conn_recv(stall, &buf, &len, 5000)); /* the challenge */
  mp_free(buf);
  send_raw(stall, "\x00\x00", 2);
  good_client_works(m);
  uint64_t t0 = mp_plat_monotonic_ns();
  expect_closed(stall);
  assert_true(mp_plat_monotonic_ns() - t0 < 5000000000u);
  /* 200 connections that vanish during the handshake. */
  for (int i = 0; i < 200; i++) {
    mp_conn *c = raw_connect(m);
    if (i % 2)
      send_raw(c, "\x00\x00\x00\x10partial", 11);
    mp_conn_free(c);
  }
  good_client_works(m);
  /* More silent connections than the cap: the extra ones wait to be accepted, each is
   * closed by the deadline, and then a good client works again. */
  mp_conn *held[12];
  for (int i = 0; i < 12; i++)
    held[i] = raw_connect(m);
  for (int i = 0; i < 12; i++)
    expect_closed(held[i]);
  good_client_works(m);
  mp_manager_free(m);
}

/* One server-level call on its own connection, as raw pickle bytes; gives the reply's kind
 * ("#RETURN" or "#TRACEBACK") in kind and its value in *result (owned by *reply). */
static void raw_server_call(mp_manager *m, const void *req, size_t len, mp_value **reply,
                            const char **kind, mp_value **result) {
  mp_conn *c = raw_authed(m);
  void *buf;
  size_t n;
  mp_value *k;
  assert_mp_ok(mp_conn_send(c, req, len));
  assert_mp_ok(mp_conn_recv(c, &buf, &n, 5000));
  mp_conn_free(c);
  assert_mp_ok(mp__pickle_loads(buf, n, reply, NULL));
  mp_free(buf);
  assert_mp_ok(mp_value_at(*reply, 0, &k));
  assert_mp_ok(mp_value_get_str(k, kind, NULL));
  assert_mp_ok(mp_value_at(*reply, 1, result));
}

/* (None, 'get_methods', (Token('get_task_queue', ('127.0.0.1', 5000), ident),), {}) as
 * CPython pickles it (protocol 4, STACK_GLOBAL, NEWOBJ, BUILD); extra = 1 adds a second
 * argument. */
static size_t get_methods_request(char *out, const char *ident, int extra) {
  static const char head[] = "\x80\x04(N\x8c\x0bget_methods"
                             "\x8c\x18multiprocessing.managers\x8c\x05Token\x93)\x81"
                             "\x8c\x0eget_task_queue\x8c\x09"
                             "127.0.0.1M\x88\x13\x86\x8c";
  size_t k = sizeof head - 1, n = strlen(ident);
  memcpy(out, head, k);
  out[k++] = (char)n;
  memcpy(out + k, ident, n);
  k += n;
  /* TUPLE3, BUILD, then the args tuple (of one or two), {} and the request tuple. */
  const char *tail = extra ? "\x87"
                             "bN\x86}t."
                           : "\x87"
                             "b\x85}t.";
  memcpy(out + k, tail, strlen(tail));
  return k + strlen(tail);
}

static void get_methods_takes_a_token(void **state) {
  (void)state;
  mp_manager *m = serve(NULL);
  /* create('get_task_queue') to learn the ident and the exposed names. */
  mp_value *req = mp_value_tuple(), *args = mp_value_tuple(), *created, *res, *ident, *names;
  mp_value_append(args, mp_value_str("get_task_queue"));
  mp_value_append(req, mp_value_nil());
  mp_value_append(req, mp_value_str("create"));
  mp_value_append(req, args);
  mp_value_append(req, mp_value_dict());
  void *buf;
  size_t len;
  const char *kind, *id;
  assert_mp_ok(mp__pickle_dumps(req, &buf, &len));
  mp_value_free(req);
  raw_server_call(m, buf, len, &created, &kind, &res);
  free(buf);
  assert_string_equal(kind, "#RETURN");
  assert_mp_ok(mp_value_at(res, 0, &ident));
  assert_mp_ok(mp_value_at(res, 1, &names));
  assert_mp_ok(mp_value_get_str(ident, &id, NULL));
  /* The Token of that ident: the same names. */
  char tok[256];
  mp_value *reply, *got;
  len = get_methods_request(tok, id, 0);
  raw_server_call(m, tok, len, &reply, &kind, &got);
  assert_string_equal(kind, "#RETURN");
  assert_int_equal(mp_value_type_of(got), MP_VALUE_TUPLE);
  assert_true(mp_value_equal(names, got));
  mp_value_free(reply);
  /* An unknown ident, an extra argument, and a plain string are '#TRACEBACK's. */
  const char *why[] = {"KeyError: 'ffff'", "TypeError", "not a Token"};
  for (int i = 0; i < 3; i++) {
    if (i < 2) {
      len = get_methods_request(tok, i == 0 ? "ffff" : id, i == 1);
    } else {
      static const char plain[] = "\x80\x04(N\x8c\x0bget_methods\x8c\x01x\x85}t.";
      len = sizeof plain - 1;
      memcpy(tok, plain, len);
    }
    raw_server_call(m, tok, len, &reply, &kind, &got);
    assert_string_equal(kind, "#TRACEBACK");
    const char *text;
    assert_mp_ok(mp_value_get_str(got, &text, NULL));
    if (strstr(text, why[i]) == NULL)
      fail_msg("traceback '%s' lacks '%s'", text, why[i]);
    mp_value_free(reply);
  }
  mp_value_free(created);
  good_client_works(m);
  mp_manager_free(m);
}

/* ---- processes ---------------------------------------------------------------------- */

/* A worker: takes tasks until the queue stays empty, answers (task, pid). */
static int worker(mp_args *args) {
  const char *addr;
  mp_args_get_str(args, 0, &addr, NULL);
  mp_manager_client *c;
  mp_queue *task, *result;
  if (mp_manager_connect(&c, addr, KEY) < 0 || mp_manager_queue(c, "get_task_queue", &task) < 0 ||
      mp_manager_queue(c, "get_result_queue", &result) < 0)
    return 2;
  int done = 0;
  for (;;) {
    mp_value *v;
    int rc = mp_queue_get_value(task, &v, 500);
    if (rc == MP_EEMPTY)
      break;
    if (rc < 0)
      return 3;
    mp_value *r = mp_value_tuple();
    mp_value_append(r, v);
    mp_value_append(r, mp_value_int(mp_getpid()));
    if (mp_queue_put_value(result, r, MP_FOREVER) < 0)
      return 4;
    mp_value_free(r);
    done++;
  }
  mp_queue_free(task);
  mp_queue_free(result);
  mp_manager_disconnect(c);
  return done > 0 ? 0 : 5;
}

/* Workers are spawned, as the separate programs (or machines) that a manager serves. Not
 * forked: this process runs the manager's serving threads, and a fork while one of them is
 * inside GCC 12's ASan allocator leaves that allocator's lock held in the child for good
 * (libasan has no fork handler for it; glibc's malloc has one), so the worker hangs at its
 * first malloc in the linux-asan leg, about once in fifty runs. */
static mp_process *start_worker(mp_target_fn fn, const char *addr) {
  mp_args *a;
  mp_process *p;
  mp_process_opts o = {0};
  o.method = MP_START_SPAWN;
  assert_mp_ok(mp_args_create(&a));
  assert_mp_ok(mp_args_add_str(a, addr));
  assert_mp_ok(mp_process_create(&p, fn, a, &o));
  assert_mp_ok(mp_process_start(p));
  mp_args_free(a);
  return p;
}

#ifdef _WIN32
#  define NTASKS 40 /* Wine: slower round trips */
#else
#  define NTASKS 200
#endif

static void two_workers_share_tasks(void **state) {
  (void)state;
  mp_manager *m = serve(NULL);
  mp_queue *task, *result;
  assert_mp_ok(mp_manager_local_queue(m, "get_task_queue", &task));
  assert_mp_ok(mp_manager_local_queue(m, "get_result_queue", &result));
  for (int i = 0; i < NTASKS; i++) {
    mp_value *v = mp_value_int(i);
    assert_mp_ok(mp_queue_put_value(task, v, 0));
    mp_value_free(v);
  }
  mp_process *w[2] = {start_worker(worker, mp_manager_address(m)),
                      start_worker(worker, mp_manager_address(m))};
  int seen[NTASKS] = {0};
  for (int i = 0; i < NTASKS; i++) {
    mp_value *r, *n;
    int64_t k;
    assert_mp_ok(mp_queue_get_value(result, &r, 30000));
    assert_mp_ok(mp_value_at(r, 0, &n));
    assert_mp_ok(mp_value_get_int(n, &k));
    assert_true(k >= 0 && k < NTASKS);
    seen[k]++;
    mp_value_free(r);
  }
  for (int i = 0; i < NTASKS; i++)
    assert_int_equal(seen[i], 1);
  for (int i = 0; i < 2; i++) {
    int code = -1;
    assert_mp_ok(mp_process_join(w[i], 30000));
    assert_mp_ok(mp_process_exitcode(w[i], &code));
    assert_true(code == 0 || code == 5); /* 5: the other worker took every task */
    mp_process_free(w[i]);
  }
  mp_value *extra = NULL;
  assert_mp(MP_EEMPTY, mp_queue_get_value(result, &extra, 0));
  mp_queue_free(task);
  mp_queue_free(result);
  mp_manager_free(m);
}

/* Blocks in a remote get that nothing answers. */
static int blocked_getter(mp_args *args) {
  const char *addr;
  mp_args_get_str(args, 0, &addr, NULL);
  mp_manager_client *c;
  mp_queue *q;
  mp_value *v;
  if (mp_manager_connect(&c, addr, KEY) < 0 || mp_manager_queue(c, "get_task_queue", &q) < 0)
    return 2;
  mp_queue_get_value(q, &v, MP_FOREVER);
  return 3; /* never reached: killed while blocked */
}

static void worker_killed_mid_get_loses_nothing(void **state) {
  (void)state;
  mp_manager *m = serve(NULL);
  mp_process *p = start_worker(blocked_getter, mp_manager_address(m));
  /* Wait until the server is blocked in the worker's get. */
  mp_event *e;
  assert_mp_ok(mp_event_create(&e));
  for (int i = 0; i < 3000 && mp__manager_waiters(m, "get_task_queue") == 0; i++)
    mp_event_wait(e, 10);
  assert_int_equal(mp__manager_waiters(m, "get_task_queue"), 1);
  assert_mp_ok(mp_process_kill(p));
  assert_mp_ok(mp_process_join(p, 10000));
  mp_process_free(p);
#ifdef _WIN32
  /* Wine closes a killed process's sockets some time after its handle is signalled (see
   * docs/platform-notes.md): wait for the server's periodic check to drop the get. On
   * Linux the socket is closed when join returns, and the item goes in at once, which
   * tests the check made just before an item is handed over. */
  for (int i = 0; i < 1000 && mp__manager_waiters(m, "get_task_queue") > 0; i++)
    mp_event_wait(e, 10);
  assert_int_equal(mp__manager_waiters(m, "get_task_queue"), 0);
#endif
  mp_event_free(e);
  mp_queue *local;
  assert_mp_ok(mp_manager_local_queue(m, "get_task_queue", &local));
  mp_value *v = mp_value_str("precious"), *got = NULL;
  assert_mp_ok(mp_queue_put_value(local, v, 0));
  mp_manager_client *c;
  mp_queue *q = remote(m, "get_task_queue", &c);
  assert_mp_ok(mp_queue_get_value(q, &got, 5000));
  assert_true(mp_value_equal(v, got));
  mp_value_free(v);
  mp_value_free(got);
  mp_queue_free(q);
  mp_queue_free(local);
  mp_manager_disconnect(c);
  mp_manager_free(m);
}

/* A value Python could not read back exactly is refused, by the server for a remote put
 * (costing that one call: the proxy goes on working) and by the master's local put. */
static void unkeepable_values_are_refused_not_altered(void **state) {
  (void)state;
  mp_manager *m = serve(NULL);
  mp_manager_client *c;
  mp_queue *q = remote(m, "get_task_queue", &c), *local;
  assert_mp_ok(mp_manager_local_queue(m, "get_task_queue", &local));
  mp_value *unhashable = mp_value_dict(), *equal = mp_value_dict();
  mp_value_dict_set(unhashable, mp_value_list(), mp_value_int(1));
  mp_value_dict_set(equal, mp_value_int(1), mp_value_str("one"));
  mp_value_dict_set(equal, mp_value_bool(1), mp_value_str("True")); /* 1 == True in Python */
  const mp_value *bad[] = {unhashable, equal};
  const char *why[] = {"unhashable", "equal"};
  for (int i = 0; i < 2; i++) {
    assert_mp(MP_EINVAL, mp_queue_put_value(q, bad[i], 5000));
    if (strstr(mp_last_error(), why[i]) == NULL)
      fail_msg("remote put: '%s' lacks '%s'", mp_last_error(), why[i]);
    assert_mp(MP_EINVAL, mp_queue_put_value(local, bad[i], 0));
    if (strstr(mp_last_error(), why[i]) == NULL)
      fail_msg("local put: '%s' lacks '%s'", mp_last_error(), why[i]);
  }
  size_t n = 1;
  assert_mp_ok(mp_queue_qsize(q, &n)); /* nothing refused went in */
  assert_int_equal(n, 0);
  mp_test_put_get(q, "the proxy still works");
  mp_value_free(unhashable);
  mp_value_free(equal);
  mp_queue_free(local);
  mp_queue_free(q);
  mp_manager_disconnect(c);
  mp_manager_free(m);
}

/* Authkeys are bytes: NUL bytes count (mp_manager_*_bytes), never truncate the key. */
static void keys_with_nul_bytes(void **state) {
  (void)state;
  static const char key[] = "a\0b";
  mp_manager *m = NULL, *other = NULL;
  mp_manager_client *c = NULL;
  assert_mp_ok(mp_manager_create_bytes(&m, "127.0.0.1:0", key, 3, NULL));
  assert_mp_ok(mp_manager_register_queue(m, "q", 0));
  assert_mp_ok(mp_manager_start(m));
  assert_mp_ok(mp_manager_connect_bytes(&c, mp_manager_address(m), key, 3));
  mp_queue *q;
  assert_mp_ok(mp_manager_queue(c, "q", &q));
  mp_test_put_get(q, "behind a NUL");
  mp_queue_free(q);
  mp_manager_disconnect(c);
  c = NULL;
  /* "a" as a C string, and a key that differs after the NUL, are other keys. */
  assert_mp(MP_EAUTH, mp_manager_connect(&c, mp_manager_address(m), "a"));
  assert_mp(MP_EAUTH, mp_manager_connect_bytes(&c, mp_manager_address(m), "a\0c", 3));
  assert_null(c);
  assert_mp(MP_EINVAL, mp_manager_connect_bytes(&c, mp_manager_address(m), NULL, 2));
  assert_mp(MP_EINVAL, mp_manager_create_bytes(&other, "127.0.0.1:0", NULL, 2, NULL));
  assert_mp(MP_EINVAL, mp_manager_create_bytes(&other, "127.0.0.1:0", "", 0, NULL));
  assert_null(other);
  mp_manager_free(m);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(values_round_trip),
      cmocka_unit_test(timeouts_and_full),
      cmocka_unit_test(bad_arguments),
      cmocka_unit_test(wrong_key),
      cmocka_unit_test(remote_shutdown_when_allowed),
      cmocka_unit_test(hostile_frames),
      cmocka_unit_test(server_refuses_bad_timeouts),
      cmocka_unit_test(get_methods_takes_a_token),
      cmocka_unit_test(stalled_and_flooding_clients),
      cmocka_unit_test(two_workers_share_tasks),
      cmocka_unit_test(worker_killed_mid_get_loses_nothing),
      cmocka_unit_test(keys_with_nul_bytes),
      cmocka_unit_test(unkeepable_values_are_refused_not_altered),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
