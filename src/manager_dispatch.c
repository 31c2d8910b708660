/* The manager's request dispatcher: one request's bytes in, one reply's bytes out, as
 * Python's multiprocessing.managers.Server answers them: server-level calls ('create',
 * 'get_methods', 'incref', 'decref', 'dummy', 'shutdown', 'accept_connection') on a new
 * connection, then method calls on the queue an ident names. It touches no socket: the
 * serving threads (manager.c) and the fuzzer give it a session with a send function.
 *
 * A request is read within the pickle reader's budget. A value the server cannot keep
 * exactly costs the client one call, not the connection: sets, bytearrays, complex numbers
 * and classes get ('#ERROR', TypeError(...)), integers beyond 64 bits, lists that contain
 * themselves, equal dict keys and requests over budget or over max_message get
 * ('#ERROR', ValueError(...)), malformed pickles ('#TRACEBACK', ...) as CPython sends, and
 * the connection goes on. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager.h"
#include "pickle.h"
#include "value.h"

/* ---- replies ------------------------------------------------------------------------ */

static int send_buf(mp__session *s, int rc, void *buf, size_t len) {
  if (rc == 0) {
    rc = s->send(s->io, buf, len);
    free(buf);
  }
  return rc;
}

static int send_pair(mp__session *s, const char *kind, const mp_value *v) {
  void *buf = NULL;
  size_t len = 0;
  int rc = mp__pickle_dumps_pair(kind, v, &buf, &len);
  return send_buf(s, rc, buf, len);
}

static int send_return(mp__session *s, mp_value *v) { /* takes v */
  if (v == NULL)
    return mp_last_error_code();
  int rc = send_pair(s, "#RETURN", v);
  mp_value_free(v);
  return rc;
}

/* ('#TRACEBACK', text): Python's client raises RemoteError with the text. */
static int send_traceback(mp__session *s, const char *fmt, const char *detail) {
  char text[600];
  snprintf(text, sizeof text, "multiproc manager: ");
  snprintf(text + strlen(text), sizeof text - strlen(text), fmt, detail);
  mp_value *v = mp_value_strn(text, strlen(text));
  if (v == NULL) /* a detail that is not UTF-8: say so without it */
    v = mp_value_str("multiproc manager: the request was refused");
  if (v == NULL)
    return MP_ENOMEM;
  int rc = send_pair(s, "#TRACEBACK", v);
  mp_value_free(v);
  return rc;
}

/* ('#ERROR', kind(msg)): Python's client raises the exception itself. */
static int send_error(mp__session *s, int kind, const char *msg) {
  void *buf = NULL;
  size_t len = 0;
  int rc = mp__pickle_dumps_error(kind, msg, &buf, &len);
  return send_buf(s, rc, buf, len);
}

/* ---- requests ----------------------------------------------------------------------- */

typedef struct request {
  mp_value *all;
  const char *ident; /* NULL: None */
  const char *method;
  mp_value *args, *kwds;
} request;

/* Checks the shape (ident, methodname, args, kwds). */
static int parse_request(request *r) {
  size_t n = 0, sl;
  mp_value *id = NULL, *meth = NULL;
  if (mp_value_type_of(r->all) != MP_VALUE_TUPLE || mp_value_len(r->all, &n) < 0 || n != 4 ||
      mp_value_at(r->all, 0, &id) < 0 || mp_value_at(r->all, 1, &meth) < 0 ||
      mp_value_at(r->all, 2, &r->args) < 0 || mp_value_at(r->all, 3, &r->kwds) < 0 ||
      mp_value_get_str(meth, &r->method, &sl) < 0 || mp_value_type_of(r->args) != MP_VALUE_TUPLE ||
      mp_value_type_of(r->kwds) != MP_VALUE_DICT ||
      (mp_value_type_of(id) != MP_VALUE_NIL && mp_value_get_str(id, &r->ident, &sl) < 0))
    return -1;
  return 0;
}

/* Binds args and kwds to named parameters (Python's call rules for a few parameters):
 * out[i] is borrowed or NULL when not given. Returns 0 or a TypeError text in err. */
static int bind_args(const request *r, const char *const *names, size_t nnames, mp_value **out,
                     char *err, size_t errsize) {
  size_t na = 0, nk = 0;
  mp_value_len(r->args, &na);
  mp_value_len(r->kwds, &nk);
  memset(out, 0, nnames * sizeof *out);
  if (na > nnames) {
    snprintf(err, errsize, "%.60s() takes at most %zu arguments (%zu given)", r->method, nnames,
             na);
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
      snprintf(err, errsize, "%.60s() got an unexpected or repeated keyword argument '%.60s'",
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

/* ---- queue methods ---------------------------------------------------------------------- */

static int call_get(mp__session *s, mp__reg_obj *o, const request *r, int nowait) {
  static const char *const names[] = {"block", "timeout"};
  mp_value *a[2];
  char err[200];
  if (bind_args(r, names, nowait ? 0 : 2, a, err, sizeof err) < 0)
    return send_error(s, MP_PK_EXC_TYPE, err);
  int ms = nowait ? 0 : timeout_of(a[0], a[1], err, sizeof err);
  if (ms == -2)
    return send_error(s, MP_PK_EXC_VALUE, err);
  mp_value *item = NULL;
  int rc = mp__squeue_get(o->q, &item, ms, &s->wait);
  if (rc == MP_EEMPTY)
    return send_error(s, MP_PK_EXC_EMPTY, NULL);
  if (rc < 0)
    return rc; /* the client is gone, or the manager is shutting down: end the connection */
  rc = send_pair(s, "#RETURN", item);
  if (rc < 0) /* not delivered: the next client gets it */
    mp__squeue_unget(o->q, item);
  else
    mp_value_free(item);
  return rc;
}

static int call_put(mp__session *s, mp__reg_obj *o, request *r, int nowait) {
  static const char *const names[] = {"item", "block", "timeout"};
  mp_value *a[3];
  char err[200];
  int bound = bind_args(r, names, nowait ? 1 : 3, a, err, sizeof err);
  if (bound == 0 && a[0] == NULL) {
    snprintf(err, sizeof err, "%.60s() missing required argument: 'item'", r->method);
    bound = -1;
  }
  if (bound < 0)
    return send_error(s, MP_PK_EXC_TYPE, err);
  int ms = nowait ? 0 : timeout_of(a[1], a[2], err, sizeof err);
  if (ms == -2)
    return send_error(s, MP_PK_EXC_VALUE, err);
  /* The queue keeps the item itself: take it out of the request (a tuple or dict item). */
  mp_value *item = NULL;
  size_t na = 0;
  mp_value_len(r->args, &na);
  int rc = na > 0 ? mp__value_take(r->args, 0, &item) : 0;
  if (na == 0) { /* item=... as a keyword: copy it */
    void *buf;
    size_t len;
    if ((rc = mp__pickle_dumps(a[0], &buf, &len)) == 0) {
      rc = mp__pickle_read(buf, len, NULL, &item);
      free(buf);
    }
  }
  if (rc == 0 && (rc = mp__squeue_put(o->q, item, ms, &s->wait)) < 0)
    mp_value_free(item);
  if (rc == MP_EFULL)
    return send_error(s, MP_PK_EXC_FULL, NULL);
  if (rc < 0)
    return rc;
  return send_return(s, mp_value_nil());
}

static const char *const exposed[] = {"empty", "full",       "get",   "get_nowait", "join",
                                      "put",   "put_nowait", "qsize", "task_done"};
#define N_EXPOSED (sizeof exposed / sizeof exposed[0])

/* 1 if the call has no arguments; else answers a TypeError and gives 0. */
static int no_args(mp__session *s, const request *r, int *rc) {
  size_t na = 0, nk = 0;
  mp_value_len(r->args, &na);
  mp_value_len(r->kwds, &nk);
  if (na == 0 && nk == 0)
    return 1;
  char err[120];
  snprintf(err, sizeof err, "%.60s() takes no arguments", r->method);
  *rc = send_error(s, MP_PK_EXC_TYPE, err);
  return 0;
}

static int call_method(mp__session *s, request *r) {
  mp__reg_obj *o = r->ident ? mp__manager_find_ident(s->m, r->ident) : NULL;
  if (o == NULL)
    return send_traceback(s, "no object with ident %.80s", r->ident ? r->ident : "None");
  const char *me = r->method;
  if (strcmp(me, "get") == 0 || strcmp(me, "get_nowait") == 0)
    return call_get(s, o, r, me[3] == '_');
  if (strcmp(me, "put") == 0 || strcmp(me, "put_nowait") == 0)
    return call_put(s, o, r, me[3] == '_');
  int rc = 0;
  if (!no_args(s, r, &rc))
    return rc;
  size_t n = mp__squeue_qsize(o->q), max = mp__squeue_maxsize(o->q);
  if (strcmp(me, "qsize") == 0)
    return send_return(s, mp_value_int((int64_t)n));
  if (strcmp(me, "empty") == 0)
    return send_return(s, mp_value_bool(n == 0));
  if (strcmp(me, "full") == 0)
    return send_return(s, mp_value_bool(max > 0 && n >= max));
  if (strcmp(me, "task_done") == 0)
    return mp__squeue_task_done(o->q) < 0
               ? send_error(s, MP_PK_EXC_VALUE, "task_done() called too many times")
               : send_return(s, mp_value_nil());
  if (strcmp(me, "join") == 0) {
    rc = mp__squeue_join(o->q, MP_FOREVER, &s->wait);
    return rc < 0 ? rc : send_return(s, mp_value_nil());
  }
  if (strcmp(me, "__repr__") == 0 || strcmp(me, "__str__") == 0) {
    char text[280];
    snprintf(text, sizeof text, "<queue.Queue '%s' served by multiproc>", o->name);
    return send_return(s, mp_value_str(text));
  }
  char err[160];
  snprintf(err, sizeof err, "method '%.60s' of the queue is not exposed", me);
  return send_error(s, MP_PK_EXC_ATTRIBUTE, err);
}

/* ---- server-level calls ------------------------------------------------------------- */

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

static int refcount(mp__session *s, const request *r, int delta) {
  const char *ident = str_arg(r, 0);
  mp__reg_obj *o = ident ? mp__manager_find_ident(s->m, ident) : NULL;
  if (o == NULL)
    return send_traceback(s, "%s: no such object", r->method);
  mp_plat_mutex_lock(&s->m->mu);
  o->refs += delta;
  if (o->refs < 0)
    o->refs = 0;
  mp_plat_mutex_unlock(&s->m->mu);
  return send_return(s, mp_value_nil());
}

/* get_methods(token): the exposed names of the object a Token names. The pickle reader
 * reads a Token as its state (typeid, address, id). Like Python's server, an unknown id
 * or an argument that is no token gives a '#TRACEBACK'. */
static int get_methods(mp__session *s, const request *r) {
  static const char *const names[] = {"token"};
  mp_value *token, *id = NULL;
  char err[200];
  if (bind_args(r, names, 1, &token, err, sizeof err) < 0)
    return send_traceback(s, "TypeError: %s", err);
  size_t n = 0;
  const char *ident = NULL;
  if (token == NULL || mp_value_type_of(token) != MP_VALUE_TUPLE || mp_value_len(token, &n) < 0 ||
      n != 3 || mp_value_at(token, 2, &id) < 0 || mp_value_get_str(id, &ident, &n) < 0)
    return send_traceback(s, "%s", "get_methods: the argument is not a Token");
  if (mp__manager_find_ident(s->m, ident) == NULL)
    return send_traceback(s, "get_methods: KeyError: '%.80s' (no such object)", ident);
  return send_return(s, exposed_tuple());
}

static int create(mp__session *s, const request *r) {
  const char *name = str_arg(r, 0);
  mp__reg_obj *o = name ? mp__manager_find_name(s->m, name) : NULL;
  size_t na = 0;
  mp_value_len(r->args, &na);
  if (o == NULL || na != 1)
    return send_traceback(s, "create: nothing registered as '%.100s' (or extra arguments)",
                          name ? name : "?");
  mp_plat_mutex_lock(&s->m->mu);
  o->refs++;
  mp_plat_mutex_unlock(&s->m->mu);
  mp_value *t = mp_value_tuple();
  if (t &&
      (mp_value_append(t, mp_value_str(o->ident)) < 0 || mp_value_append(t, exposed_tuple()) < 0)) {
    mp_value_free(t);
    t = NULL;
  }
  return send_return(s, t);
}

/* A call on a new connection; its connection ends after the reply but for
 * 'accept_connection'. */
static int server_call(mp__session *s, const request *r) {
  const char *me = r->method;
  int rc;
  if (strcmp(me, "accept_connection") == 0) {
    rc = send_return(s, mp_value_nil());
    s->accepted = rc == 0;
    return rc < 0 ? rc : MP__KEEP;
  }
  if (strcmp(me, "create") == 0)
    rc = create(s, r);
  else if (strcmp(me, "get_methods") == 0)
    rc = get_methods(s, r);
  else if (strcmp(me, "incref") == 0 || strcmp(me, "decref") == 0)
    rc = refcount(s, r, me[0] == 'i' ? 1 : -1);
  else if (strcmp(me, "dummy") == 0)
    rc = send_return(s, mp_value_nil());
  else if (strcmp(me, "shutdown") == 0 && !s->m->opts.allow_remote_shutdown)
    rc = send_traceback(s, "%s is disabled on this server (allow_remote_shutdown)", me);
  else if (strcmp(me, "shutdown") == 0) {
    rc = send_return(s, mp_value_nil());
    mp__manager_stop(s->m, 1);
  } else
    rc = send_traceback(s, "'%.60s' is not a server call this manager offers", me);
  return rc < 0 ? rc : MP__CLOSE;
}

/* ---- the dispatcher ----------------------------------------------------------------- */

/* The reply to a request the pickle reader refused; the connection goes on. */
static int refused(mp__session *s, const mp__pk_read *io) {
  char why[400]; /* mp_set_error's message is overwritten by what the reply does */
  snprintf(why, sizeof why, "multiproc manager: %s", mp_last_error());
  if (io->refusal != MP_PK_EXC_NONE)
    return send_error(s, io->refusal, why);
  return send_traceback(s, "%s", why + strlen("multiproc manager: "));
}

int mp__dispatch(mp__session *s, const void *req, size_t len) {
  mp__pk_read io = {0};
  io.max_values = s->m->opts.max_values;
  io.cancel = &s->m->cancel;
  request r;
  memset(&r, 0, sizeof r);
  int rc = mp__pickle_read(req, len, &io, &r.all);
  if (rc == MP_EPROTO)
    rc = refused(s, &io);
  else if (rc == 0 && parse_request(&r) < 0)
    rc = send_traceback(s, "%s", "a request is not (ident, methodname, args, kwds)");
  else if (rc == 0 && s->accepted)
    rc = call_method(s, &r);
  else if (rc == 0 && r.ident != NULL)
    rc = send_traceback(s, "%s", "a method call before accept_connection");
  else if (rc == 0)
    rc = server_call(s, &r);
  mp_value_free(r.all);
  if (rc < 0)
    return rc;
  return s->accepted ? MP__KEEP : MP__CLOSE;
}

int mp__dispatch_oversized(mp__session *s) {
  char why[200];
  snprintf(why, sizeof why,
           "multiproc manager: the request exceeds the manager's max_message "
           "of %zu bytes; it was skipped unread",
           s->m->opts.max_message);
  int rc = send_error(s, MP_PK_EXC_VALUE, why);
  if (rc < 0)
    return rc;
  return s->accepted ? MP__KEEP : MP__CLOSE;
}
