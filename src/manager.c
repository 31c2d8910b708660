/* The manager's server: Python's multiprocessing.managers.Server for registered queues.
 * One thread accepts; each connection gets a thread that authenticates it (the server
 * challenges first, then answers the client's challenge), reads one request and either
 * answers a server-level call ('create', 'get_methods', 'incref', 'decref', 'dummy',
 * 'shutdown') and
 * closes, or, for 'accept_connection', serves method calls on that connection until the
 * client leaves. Nothing is unpickled before authentication, frames are bounded, a
 * handshake has a deadline, and the number of connections is capped. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"
#include "pickle.h"
#include "manager.h"
#include "platform.h"

#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_HANDSHAKE_MS 5000
#define DEFAULT_MAX_MESSAGE ((size_t)64 << 20)
#define NAME_MAX_LEN 200

enum { ST_CREATED, ST_SERVING, ST_STOPPED };

typedef struct reg_obj {
  char *name; /* the typeid, e.g. "get_task_queue" */
  char ident[24];
  mp__squeue *q;
  long refs; /* Python's id_to_refcount, kept for incref/decref; the queue lives on */
} reg_obj;

typedef struct live_conn {
  mp_conn *conn;
  int busy; /* handling a request: shutdown lets it write its reply */
  struct live_conn *next;
} live_conn;

struct mp_manager {
  char address[80];
  char *authkey;
  size_t keylen;
  mp_manager_opts opts;
  mp_plat_listener *listener;
  mp_plat_mutex mu;
  mp_plat_cond changed; /* nconns or state changed */
  int state, stopping;
  int nconns;
  live_conn *conns;
  struct conn_job *done; /* finished connection threads, to be joined */
  reg_obj *objs;
  size_t nobjs;
  mp_plat_thread *thread; /* mp_manager_start's */
};

static void opts_defaults(mp_manager_opts *o, const mp_manager_opts *in) {
  memset(o, 0, sizeof *o);
  if (in)
    *o = *in;
  if (o->max_connections <= 0)
    o->max_connections = DEFAULT_MAX_CONNECTIONS;
  if (o->handshake_timeout_ms <= 0)
    o->handshake_timeout_ms = DEFAULT_HANDSHAKE_MS;
  if (o->max_message == 0)
    o->max_message = DEFAULT_MAX_MESSAGE;
}

int mp_manager_create(mp_manager **out, const char *address, const char *authkey,
                      const mp_manager_opts *opts) {
  if (out == NULL || address == NULL || authkey == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_create: m, address or authkey is NULL");
  if (authkey[0] == '\0' && !(opts && opts->allow_empty_authkey))
    return mp_set_error(MP_EINVAL, "mp_manager_create: an empty authkey lets anyone in; set "
                                   "opts.allow_empty_authkey to allow it");
  char host[64];
  int port;
  int rc = mp__split_address(address, host, sizeof host, &port);
  if (rc < 0)
    return rc;
  mp_manager *m = calloc(1, sizeof *m);
  if (m == NULL || (m->authkey = malloc(strlen(authkey) + 1)) == NULL) {
    free(m);
    return mp_set_error(MP_ENOMEM, "out of memory allocating a manager");
  }
  m->keylen = strlen(authkey);
  memcpy(m->authkey, authkey, m->keylen + 1);
  opts_defaults(&m->opts, opts);
  rc = mp_plat_mutex_init(&m->mu);
  if (rc == 0 && (rc = mp_plat_cond_init(&m->changed)) < 0)
    mp_plat_mutex_destroy(&m->mu);
  if (rc == 0 && (rc = mp_plat_tcp_listen(&m->listener, host, port, 64)) < 0) {
    mp_plat_cond_destroy(&m->changed);
    mp_plat_mutex_destroy(&m->mu);
  }
  if (rc < 0) {
    free(m->authkey);
    free(m);
    return rc;
  }
  snprintf(m->address, sizeof m->address, "%s:%d", host[0] ? host : "0.0.0.0",
           mp_plat_tcp_port(m->listener));
  *out = m;
  return 0;
}

const char *mp_manager_address(const mp_manager *m) { return m ? m->address : ""; }

static reg_obj *find_name(mp_manager *m, const char *name) {
  for (size_t i = 0; i < m->nobjs; i++)
    if (strcmp(m->objs[i].name, name) == 0)
      return &m->objs[i];
  return NULL;
}

static reg_obj *find_ident(mp_manager *m, const char *ident) {
  for (size_t i = 0; i < m->nobjs; i++)
    if (strcmp(m->objs[i].ident, ident) == 0)
      return &m->objs[i];
  return NULL;
}

int mp_manager_register_queue(mp_manager *m, const char *name, size_t maxsize) {
  if (m == NULL || name == NULL || name[0] == '\0' || strlen(name) > NAME_MAX_LEN)
    return mp_set_error(MP_EINVAL, "mp_manager_register_queue: bad manager or name");
  if (m->state != ST_CREATED)
    return mp_set_error(MP_ESTATE, "mp_manager_register_queue: register before serving");
  if (find_name(m, name))
    return mp_set_error(MP_EBUSY, "mp_manager_register_queue: '%s' is already registered", name);
  reg_obj *objs = realloc(m->objs, (m->nobjs + 1) * sizeof *objs);
  if (objs == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory registering '%s'", name);
  m->objs = objs;
  reg_obj *o = &objs[m->nobjs];
  memset(o, 0, sizeof *o);
  o->name = malloc(strlen(name) + 1);
  if (o->name == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory registering '%s'", name);
  strcpy(o->name, name);
  int rc = mp__squeue_create(&o->q, maxsize);
  if (rc < 0) {
    free(o->name);
    return rc;
  }
  /* Python's ident is '%x' % id(obj); any string the client hands back will do. */
  snprintf(o->ident, sizeof o->ident, "%llx", 0x7f0000001000ull + 0x40ull * m->nobjs);
  m->nobjs++;
  return 0;
}

int mp_manager_local_queue(mp_manager *m, const char *name, mp_queue **q) {
  if (m == NULL || name == NULL || q == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_local_queue: an argument is NULL");
  reg_obj *o = find_name(m, name);
  if (o == NULL)
    return mp_set_error(MP_ENOENT, "mp_manager_local_queue: nothing registered as '%s'", name);
  return mp__squeue_local(o->q, q);
}

size_t mp__manager_waiters(mp_manager *m, const char *name) {
  reg_obj *o = find_name(m, name);
  return o ? mp__squeue_waiters(o->q) : 0;
}

/* ---- replies ------------------------------------------------------------------------ */

static int send_pair(mp_conn *c, const char *kind, const mp_value *v) {
  void *buf;
  size_t len;
  int rc = mp__pickle_dumps_pair(kind, v, &buf, &len);
  if (rc == 0) {
    rc = mp_conn_send(c, buf, len);
    free(buf);
  }
  return rc;
}

static int send_return(mp_conn *c, mp_value *v) { /* takes v */
  if (v == NULL)
    return mp_last_error_code();
  int rc = send_pair(c, "#RETURN", v);
  mp_value_free(v);
  return rc;
}

/* ('#TRACEBACK', text): Python's client raises RemoteError with the text. */
static int send_traceback(mp_conn *c, const char *fmt, const char *detail) {
  char text[600];
  snprintf(text, sizeof text, "multiproc manager: ");
  snprintf(text + strlen(text), sizeof text - strlen(text), fmt, detail);
  mp_value *v = mp_value_str(text);
  if (v == NULL)
    return MP_ENOMEM;
  int rc = send_pair(c, "#TRACEBACK", v);
  mp_value_free(v);
  return rc;
}

static int send_error(mp_conn *c, int kind, const char *msg) {
  void *buf;
  size_t len;
  int rc = mp__pickle_dumps_error(kind, msg, &buf, &len);
  if (rc == 0) {
    rc = mp_conn_send(c, buf, len);
    free(buf);
  }
  return rc;
}

/* ---- requests ----------------------------------------------------------------------- */

typedef struct request {
  mp_value *all;
  const char *ident; /* NULL: None */
  const char *method;
  mp_value *args, *kwds;
} request;

/* Reads one request: a pickled (ident, methodname, args, kwds). */
static int read_request(mp_conn *c, int timeout_ms, request *r) {
  void *buf;
  size_t len;
  memset(r, 0, sizeof *r);
  int rc = mp_conn_recv(c, &buf, &len, timeout_ms);
  if (rc < 0)
    return rc;
  rc = mp__pickle_loads(buf, len, &r->all, NULL);
  free(buf);
  if (rc < 0)
    return rc;
  size_t n = 0;
  mp_value *id = NULL, *meth = NULL;
  size_t sl;
  if (mp_value_type_of(r->all) != MP_VALUE_TUPLE || mp_value_len(r->all, &n) < 0 || n != 4 ||
      mp_value_at(r->all, 0, &id) < 0 || mp_value_at(r->all, 1, &meth) < 0 ||
      mp_value_at(r->all, 2, &r->args) < 0 || mp_value_at(r->all, 3, &r->kwds) < 0 ||
      mp_value_get_str(meth, &r->method, &sl) < 0 || mp_value_type_of(r->args) != MP_VALUE_TUPLE ||
      mp_value_type_of(r->kwds) != MP_VALUE_DICT ||
      (mp_value_type_of(id) != MP_VALUE_NIL && mp_value_get_str(id, &r->ident, &sl) < 0)) {
    mp_value_free(r->all);
    r->all = NULL;
    return mp_set_error(MP_EPROTO, "a request is not (ident, methodname, args, kwds)");
  }
  return 0;
}

/* Binds args and kwds to named parameters (Python's call rules for a few parameters):
 * out[i] is borrowed or NULL when not given. Returns 0 or a TypeError text in err. */
static int bind_args(const request *r, const char *const *names, size_t nnames, mp_value **out,
                     char *err, size_t errsize) {
  size_t na, nk;
  mp_value_len(r->args, &na);
  mp_value_len(r->kwds, &nk);
  memset(out, 0, nnames * sizeof *out);
  if (na > nnames) {
    snprintf(err, errsize, "%s() takes at most %zu arguments (%zu given)", r->method, nnames, na);
    return -1;
  }
  for (size_t i = 0; i < na; i++)
    mp_value_at(r->args, i, &out[i]);
  for (size_t k = 0; k < nk; k++) {
    mp_value *key, *val;
    const char *s = "";
    size_t sl, i = 0;
    mp_value_dict_at(r->kwds, k, &key, &val);
    mp_value_get_str(key, &s, &sl);
    while (i < nnames && strcmp(names[i], s) != 0)
      i++;
    if (i == nnames || out[i] != NULL) {
      snprintf(err, errsize, "%s() got an unexpected or repeated keyword argument '%.60s'",
               r->method, s);
      return -1;
    }
    out[i] = val;
  }
  return 0;
}

static int truthy(const mp_value *v) {
  int b;
  int64_t i;
  if (v == NULL)
    return 1;
  if (mp_value_get_bool(v, &b) == 0)
    return b;
  if (mp_value_get_int(v, &i) == 0)
    return i != 0;
  return mp_value_type_of(v) != MP_VALUE_NIL;
}

/* block/timeout as Python's queue: a timeout must be None or a finite number >= 0. Gives
 * milliseconds (MP_FOREVER, 0 = do not block) or -2 with a ValueError text. */
static int timeout_of(const mp_value *block, const mp_value *timeout, char *err, size_t n) {
  if (!truthy(block))
    return 0;
  if (timeout == NULL || mp_value_type_of(timeout) == MP_VALUE_NIL)
    return MP_FOREVER;
  double t;
  int64_t i;
  if (mp_value_get_double(timeout, &t) < 0) {
    if (mp_value_get_int(timeout, &i) < 0) {
      snprintf(err, n, "'timeout' must be a number or None");
      return -2;
    }
    t = (double)i;
  }
  if (!isfinite(t) || t < 0) {
    snprintf(err, n, "'timeout' must be a non-negative number");
    return -2;
  }
  double ms = t * 1000.0;
  if (ms >= (double)INT_MAX)
    return INT_MAX;
  int whole = (int)ms;
  return whole + (ms > (double)whole); /* round up: never return before the timeout */
}

typedef struct client_ctx {
  mp_conn *conn;
} client_ctx;

static int client_alive(void *arg) {
  client_ctx *ctx = arg;
  return !mp_plat_tcp_peer_gone(mp__conn_chan(ctx->conn));
}

static int call_get(mp_conn *c, reg_obj *o, const request *r, int nowait) {
  static const char *const names[] = {"block", "timeout"};
  mp_value *a[2];
  char err[160];
  if (bind_args(r, names, nowait ? 0 : 2, a, err, sizeof err) < 0)
    return send_error(c, MP_PK_EXC_TYPE, err);
  int ms = nowait ? 0 : timeout_of(a[0], a[1], err, sizeof err);
  if (ms == -2)
    return send_error(c, MP_PK_EXC_VALUE, err);
  client_ctx ctx = {c};
  mp_value *item = NULL;
  int rc = mp__squeue_get(o->q, &item, ms, client_alive, &ctx);
  if (rc == MP_EEMPTY)
    return send_error(c, MP_PK_EXC_EMPTY, NULL);
  if (rc < 0)
    return rc; /* the client is gone, or the manager is shutting down: end the connection */
  rc = send_pair(c, "#RETURN", item);
  if (rc < 0) /* not delivered: the next client gets it */
    mp__squeue_unget(o->q, item);
  else
    mp_value_free(item);
  return rc;
}

static int call_put(mp_conn *c, reg_obj *o, const request *r, int nowait) {
  static const char *const names[] = {"item", "block", "timeout"};
  mp_value *a[3];
  char err[160];
  int bound = bind_args(r, names, nowait ? 1 : 3, a, err, sizeof err);
  if (bound == 0 && a[0] == NULL) {
    snprintf(err, sizeof err, "%s() missing required argument: 'item'", r->method);
    bound = -1;
  }
  if (bound < 0)
    return send_error(c, MP_PK_EXC_TYPE, err);
  int ms = nowait ? 0 : timeout_of(a[1], a[2], err, sizeof err);
  if (ms == -2)
    return send_error(c, MP_PK_EXC_VALUE, err);
  /* Detach the item from the request so the queue can own it. */
  mp_value *item = mp_value_copy(a[0]);
  int rc = item ? 0 : mp_last_error_code();
  if (rc == 0 && (rc = mp__squeue_put(o->q, item, ms)) < 0)
    mp_value_free(item);
  if (rc == MP_EFULL)
    return send_error(c, MP_PK_EXC_FULL, NULL);
  if (rc < 0)
    return rc;
  return send_return(c, mp_value_nil());
}

static const char *const exposed[] = {"empty", "full",       "get",   "get_nowait", "join",
                                      "put",   "put_nowait", "qsize", "task_done"};
#define N_EXPOSED (sizeof exposed / sizeof exposed[0])

static int no_args(mp_conn *c, const request *r) {
  size_t na, nk;
  mp_value_len(r->args, &na);
  mp_value_len(r->kwds, &nk);
  if (na || nk) {
    char err[120];
    snprintf(err, sizeof err, "%s() takes no arguments", r->method);
    send_error(c, MP_PK_EXC_TYPE, err);
    return 0;
  }
  return 1;
}

static int call_method(mp_manager *m, mp_conn *c, const request *r) {
  reg_obj *o = r->ident ? find_ident(m, r->ident) : NULL;
  if (o == NULL)
    return send_traceback(c, "no object with ident %.80s", r->ident ? r->ident : "None");
  const char *me = r->method;
  if (strcmp(me, "get") == 0 || strcmp(me, "get_nowait") == 0)
    return call_get(c, o, r, me[3] == '_');
  if (strcmp(me, "put") == 0 || strcmp(me, "put_nowait") == 0)
    return call_put(c, o, r, me[3] == '_');
  if (!no_args(c, r))
    return 0;
  size_t n = mp__squeue_qsize(o->q), max = mp__squeue_maxsize(o->q);
  if (strcmp(me, "qsize") == 0)
    return send_return(c, mp_value_int((int64_t)n));
  if (strcmp(me, "empty") == 0)
    return send_return(c, mp_value_bool(n == 0));
  if (strcmp(me, "full") == 0)
    return send_return(c, mp_value_bool(max > 0 && n >= max));
  if (strcmp(me, "task_done") == 0)
    return mp__squeue_task_done(o->q) < 0
               ? send_error(c, MP_PK_EXC_VALUE, "task_done() called too many times")
               : send_return(c, mp_value_nil());
  if (strcmp(me, "join") == 0) {
    int rc = mp__squeue_join(o->q, MP_FOREVER);
    return rc < 0 ? rc : send_return(c, mp_value_nil());
  }
  if (strcmp(me, "__repr__") == 0 || strcmp(me, "__str__") == 0) {
    char text[280];
    snprintf(text, sizeof text, "<queue.Queue '%s' served by multiproc>", o->name);
    return send_return(c, mp_value_str(text));
  }
  char err[160];
  snprintf(err, sizeof err, "method '%.60s' of the queue is not exposed", me);
  return send_error(c, MP_PK_EXC_ATTRIBUTE, err);
}

typedef struct conn_job {
  mp_manager *m;
  mp_conn *conn;
  live_conn link;
  mp_plat_thread *thread;
  struct conn_job *next_done; /* on m->done once the thread's work is over */
} conn_job;

/* Marks the connection busy (a request is being handled) or idle (waiting for the next);
 * going idle fails once the manager is stopping. */
static int set_busy(mp_manager *m, live_conn *l, int busy) {
  mp_plat_mutex_lock(&m->mu);
  l->busy = busy;
  int stop = !busy && m->stopping;
  mp_plat_mutex_unlock(&m->mu);
  return stop ? -1 : 0;
}

/* Serves method calls on a connection until the client leaves (Server.serve_client). */
static void serve_client(mp_manager *m, live_conn *l) {
  mp_conn *c = l->conn;
  for (;;) {
    request r;
    if (set_busy(m, l, 0) < 0)
      return;
    int rc = read_request(c, MP_FOREVER, &r);
    set_busy(m, l, 1);
    if (rc == MP_EPROTO && r.all == NULL && mp_conn_readable(c)) {
      /* Bad pickle or forbidden global: say why, then drop the connection. */
      send_traceback(c, "%s; closing the connection", mp_last_error());
      return;
    }
    if (rc < 0)
      return;
    rc = call_method(m, c, &r);
    mp_value_free(r.all);
    if (rc < 0)
      return;
  }
}

/* ---- server-level calls ------------------------------------------------------------- */

static mp_value *tuple2(mp_value *a, mp_value *b) {
  mp_value *t = mp_value_tuple();
  if (t && (mp_value_append(t, a) < 0 || mp_value_append(t, b) < 0)) {
    mp_value_free(t);
    return NULL;
  }
  if (t == NULL) {
    mp_value_free(a);
    mp_value_free(b);
  }
  return t;
}

static mp_value *exposed_tuple(void) {
  mp_value *t = mp_value_tuple();
  for (size_t i = 0; t && i < N_EXPOSED; i++)
    if (mp_value_append(t, mp_value_str(exposed[i])) < 0) {
      mp_value_free(t);
      return NULL;
    }
  return t;
}

static const char *str_arg(const request *r, size_t i) {
  mp_value *v = NULL;
  const char *s;
  size_t n;
  if (mp_value_at(r->args, i, &v) < 0 || mp_value_get_str(v, &s, &n) < 0)
    return NULL;
  return s;
}

static int refcount(mp_manager *m, mp_conn *c, const request *r, int delta) {
  const char *ident = str_arg(r, 0);
  reg_obj *o = ident ? find_ident(m, ident) : NULL;
  if (o == NULL)
    return send_traceback(c, "%s: no such object", r->method);
  mp_plat_mutex_lock(&m->mu);
  o->refs += delta;
  if (o->refs < 0)
    o->refs = 0;
  mp_plat_mutex_unlock(&m->mu);
  return send_return(c, mp_value_nil());
}

/* get_methods(token): the exposed names of the object a Token names. The pickle reader
 * decodes a Token to its state (typeid, address, id). Like Python's server, an unknown
 * id or an argument that is no token gives a '#TRACEBACK'. */
static int get_methods(mp_manager *m, mp_conn *c, const request *r) {
  static const char *const names[] = {"token"};
  mp_value *token, *id = NULL;
  char err[160];
  if (bind_args(r, names, 1, &token, err, sizeof err) < 0)
    return send_traceback(c, "TypeError: %s", err);
  size_t n = 0;
  const char *ident = NULL;
  if (token == NULL || mp_value_type_of(token) != MP_VALUE_TUPLE || mp_value_len(token, &n) < 0 ||
      n != 3 || mp_value_at(token, 2, &id) < 0 || mp_value_get_str(id, &ident, &n) < 0)
    return send_traceback(c, "%s", "get_methods: the argument is not a Token");
  if (find_ident(m, ident) == NULL)
    return send_traceback(c, "get_methods: KeyError: '%.80s' (no such object)", ident);
  return send_return(c, exposed_tuple());
}

static void stop_serving(mp_manager *m) {
  mp_plat_mutex_lock(&m->mu);
  m->stopping = 1;
  mp_plat_cond_broadcast(&m->changed);
  mp_plat_mutex_unlock(&m->mu);
  mp_plat_tcp_wake(m->listener);
}

static int server_call(mp_manager *m, live_conn *l, const request *r) {
  mp_conn *c = l->conn;
  const char *me = r->method;
  if (strcmp(me, "create") == 0) {
    const char *name = str_arg(r, 0);
    reg_obj *o = name ? find_name(m, name) : NULL;
    size_t na;
    mp_value_len(r->args, &na);
    if (o == NULL || na != 1)
      return send_traceback(c, "create: nothing registered as '%.100s' (or extra arguments)",
                            name ? name : "?");
    mp_plat_mutex_lock(&m->mu);
    o->refs++;
    mp_plat_mutex_unlock(&m->mu);
    return send_return(c, tuple2(mp_value_str(o->ident), exposed_tuple()));
  }
  if (strcmp(me, "get_methods") == 0)
    return get_methods(m, c, r);
  if (strcmp(me, "incref") == 0 || strcmp(me, "decref") == 0)
    return refcount(m, c, r, me[0] == 'i' ? 1 : -1);
  if (strcmp(me, "dummy") == 0)
    return send_return(c, mp_value_nil());
  if (strcmp(me, "accept_connection") == 0) {
    int rc = send_return(c, mp_value_nil());
    if (rc == 0)
      serve_client(m, l);
    return rc;
  }
  if (strcmp(me, "shutdown") == 0) {
    if (!m->opts.allow_remote_shutdown)
      return send_traceback(c, "%s is disabled on this server (allow_remote_shutdown)", me);
    int rc = send_return(c, mp_value_nil());
    stop_serving(m);
    return rc;
  }
  return send_traceback(c, "'%.60s' is not a server call this manager offers", me);
}

/* ---- connections -------------------------------------------------------------------- */

static void handle(mp_manager *m, live_conn *l) {
  mp_conn *c = l->conn;
  int t = m->opts.handshake_timeout_ms;
  uint64_t start = mp_plat_monotonic_ns();
  mp_conn_set_max_message(c, MP_MANAGER_HANDSHAKE_MAX);
  if (mp__auth_deliver(c, m->authkey, m->keylen, t) < 0 ||
      mp__auth_answer(c, m->authkey, m->keylen, t) < 0)
    return;
  mp_conn_set_max_message(c, m->opts.max_message);
  uint64_t spent = (mp_plat_monotonic_ns() - start) / 1000000;
  request r;
  int rc = read_request(c, spent >= (uint64_t)t ? 0 : t - (int)spent, &r);
  set_busy(m, l, 1);
  if (rc == MP_EPROTO && r.all == NULL) {
    send_traceback(c, "%s; closing the connection", mp_last_error());
    return;
  }
  if (rc < 0)
    return;
  if (r.ident != NULL)
    send_traceback(c, "%s", "a method call before accept_connection");
  else
    server_call(m, l, &r);
  mp_value_free(r.all);
}

static void conn_thread(void *arg) {
  conn_job *job = arg;
  mp_manager *m = job->m;
  handle(m, &job->link);
  mp_plat_mutex_lock(&m->mu);
  for (live_conn **p = &m->conns; *p; p = &(*p)->next)
    if (*p == &job->link) {
      *p = job->link.next;
      break;
    }
  mp_conn_free(job->conn);
  /* Joined (not detached) by reap_done: a manager that is freed has no thread left
   * running, not even one still running its thread-exit destructors. */
  job->next_done = m->done;
  m->done = job;
  m->nconns--;
  mp_plat_cond_broadcast(&m->changed);
  mp_plat_mutex_unlock(&m->mu);
}

/* Joins the connection threads that have finished their work. */
static void reap_done(mp_manager *m) {
  mp_plat_mutex_lock(&m->mu);
  conn_job *job = m->done;
  m->done = NULL;
  mp_plat_mutex_unlock(&m->mu);
  while (job) {
    conn_job *next = job->next_done;
    if (mp_plat_thread_wait(job->thread, -1) == 0)
      mp_plat_thread_reap(job->thread);
    free(job);
    job = next;
  }
}

/* Starts a thread for an accepted connection, or closes it when at the cap. */
static void dispatch_conn(mp_manager *m, mp_plat_chan *chan) {
  reap_done(m);
  mp_conn *c;
  if (mp__conn_from_chan(chan, &c) < 0)
    return;
  conn_job *job = calloc(1, sizeof *job);
  mp_plat_mutex_lock(&m->mu);
  if (job == NULL || m->stopping) {
    mp_plat_mutex_unlock(&m->mu);
    mp_conn_free(c);
    free(job);
    return;
  }
  job->m = m;
  job->conn = c;
  job->link.conn = c;
  job->link.next = m->conns;
  m->conns = &job->link;
  m->nconns++;
  /* job->thread is set before the thread can finish: it needs m->mu, held here. */
  if (mp_plat_thread_start(&job->thread, conn_thread, job) < 0) {
    m->conns = job->link.next;
    m->nconns--;
    mp_conn_free(c);
    free(job);
  }
  mp_plat_mutex_unlock(&m->mu);
}

/* Ends every connection and blocked call, then waits for the connection threads. */
static void stop_all(mp_manager *m) {
  for (size_t i = 0; i < m->nobjs; i++)
    mp__squeue_close(m->objs[i].q);
  mp_plat_mutex_lock(&m->mu);
  m->stopping = 1;
  for (live_conn *l = m->conns; l; l = l->next)
    if (!l->busy) /* a busy one writes its reply, then sees m->stopping */
      mp_plat_tcp_shutdown(mp__conn_chan(l->conn));
  while (m->nconns > 0)
    mp_plat_cond_wait(&m->changed, &m->mu, -1);
  mp_plat_mutex_unlock(&m->mu);
  reap_done(m);
  mp_plat_mutex_lock(&m->mu);
  m->state = ST_STOPPED;
  mp_plat_cond_broadcast(&m->changed);
  mp_plat_mutex_unlock(&m->mu);
}

/* Waits for a free connection slot: beyond the cap, new connections wait in the listen
 * backlog (as with a busy server) rather than being refused. 0, or -1 when stopping. */
static int wait_slot(mp_manager *m) {
  mp_plat_mutex_lock(&m->mu);
  while (m->nconns >= m->opts.max_connections && !m->stopping)
    mp_plat_cond_wait(&m->changed, &m->mu, -1);
  int stop = m->stopping;
  mp_plat_mutex_unlock(&m->mu);
  return stop ? -1 : 0;
}

static int accept_loop(mp_manager *m) {
  int rc = MP_ECANCELED;
  while (wait_slot(m) == 0) {
    mp_plat_chan *chan;
    rc = mp_plat_tcp_accept(m->listener, &chan);
    if (rc < 0)
      break;
    dispatch_conn(m, chan);
  }
  stop_all(m);
  return rc == MP_ECANCELED ? 0 : rc;
}

static void accept_thread(void *arg) { accept_loop(arg); }

static int begin(mp_manager *m, const char *fn) {
  mp_plat_mutex_lock(&m->mu);
  int ok = m->state == ST_CREATED;
  if (ok)
    m->state = ST_SERVING;
  mp_plat_mutex_unlock(&m->mu);
  return ok ? 0 : mp_set_error(MP_ESTATE, "%s: the manager is already serving or shut down", fn);
}

int mp_manager_start(mp_manager *m) {
  if (m == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_start: manager is NULL");
  int rc = begin(m, "mp_manager_start");
  if (rc == 0 && (rc = mp_plat_thread_start(&m->thread, accept_thread, m)) < 0)
    m->state = ST_CREATED;
  return rc;
}

int mp_manager_serve_forever(mp_manager *m) {
  if (m == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_serve_forever: manager is NULL");
  int rc = begin(m, "mp_manager_serve_forever");
  return rc < 0 ? rc : accept_loop(m);
}

int mp_manager_shutdown(mp_manager *m) {
  if (m == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_shutdown: manager is NULL");
  stop_serving(m);
  mp_plat_mutex_lock(&m->mu);
  if (m->state == ST_CREATED)
    m->state = ST_STOPPED;
  while (m->state != ST_STOPPED) /* serve_forever in another thread finishes its stop */
    mp_plat_cond_wait(&m->changed, &m->mu, -1);
  mp_plat_thread *t = m->thread;
  m->thread = NULL;
  mp_plat_mutex_unlock(&m->mu);
  if (t && mp_plat_thread_wait(t, -1) == 0)
    mp_plat_thread_reap(t);
  return 0;
}

void mp_manager_free(mp_manager *m) {
  if (m == NULL)
    return;
  mp_manager_shutdown(m);
  mp_plat_tcp_close(m->listener);
  for (size_t i = 0; i < m->nobjs; i++) {
    mp__squeue_free(m->objs[i].q);
    free(m->objs[i].name);
  }
  free(m->objs);
  mp_plat_cond_destroy(&m->changed);
  mp_plat_mutex_destroy(&m->mu);
  free(m->authkey);
  free(m);
}
