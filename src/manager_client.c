/* The manager's client: Python's BaseManager.connect() and its queue proxies. A
 * server-level call ('dummy', 'create', 'decref', 'shutdown') uses a new connection each
 * time, as Python does; method calls go over persistent connections opened with
 * 'accept_connection'. A proxy keeps a small pool of such connections, so that threads
 * sharing one proxy each get their own (one thread blocked in get does not hold up
 * another's put), which is what Python's per-thread connections achieve. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "connection.h"
#include "queue.h"
#include "pickle.h"
#include "manager.h"
#include "platform.h"

#define CONNECT_TIMEOUT_MS 10000
#define REPLY_MARGIN_MS 10000 /* beyond a call's own timeout, for the network */
#define CLIENT_MAX_MESSAGE ((size_t)64 << 20)

struct mp_manager_client {
  char host[64];
  int port;
  char *authkey;
  size_t keylen;
};

static int open_conn(mp_manager_client *cl, mp_conn **out) {
  mp_plat_chan *chan;
  int rc = mp_plat_tcp_connect(cl->host, cl->port, CONNECT_TIMEOUT_MS, &chan);
  if (rc < 0)
    return rc;
  mp_conn *c;
  if ((rc = mp__conn_from_chan(chan, &c)) < 0)
    return rc;
  mp_conn_set_max_message(c, MP_AUTH_FRAME_MAX);
  rc = mp__auth_answer(c, cl->authkey, cl->keylen, CONNECT_TIMEOUT_MS);
  if (rc == 0)
    rc = mp__auth_deliver(c, cl->authkey, cl->keylen, CONNECT_TIMEOUT_MS);
  if (rc < 0) {
    mp_conn_free(c);
    return rc;
  }
  mp_conn_set_max_message(c, CLIENT_MAX_MESSAGE);
  *out = c;
  return 0;
}

/* Maps a reply's exception to a code. */
static int remote_error(const mp__pk_exc *exc) {
  const char *name = mp__pickle_exc_name(exc->kind);
  switch (exc->kind) {
  case MP_PK_EXC_EMPTY: return mp_set_error(MP_EEMPTY, "the remote queue is empty (queue.Empty)");
  case MP_PK_EXC_FULL: return mp_set_error(MP_EFULL, "the remote queue is full (queue.Full)");
  case MP_PK_EXC_VALUE:
  case MP_PK_EXC_TYPE:
    return mp_set_error(MP_EINVAL, "the manager refused the call: %s: %s", name, exc->msg);
  default: return mp_set_error(MP_ETASK, "the remote call raised %s: %s", name, exc->msg);
  }
}

/* Copies what a reply carries out of the reply tuple. */
static int detach(const mp_value *v, mp_value **out) {
  *out = mp_value_copy(v);
  return *out ? 0 : mp_last_error_code();
}

static int parse_reply(void *buf, size_t len, mp_value **result) {
  mp_value *reply = NULL, *kind = NULL, *val = NULL;
  mp__pk_exc exc;
  int rc = mp__pickle_loads(buf, len, &reply, &exc);
  if (rc < 0)
    return rc;
  const char *k = "";
  size_t n = 0, kl;
  if (mp_value_type_of(reply) != MP_VALUE_TUPLE || mp_value_len(reply, &n) < 0 || n != 2 ||
      mp_value_at(reply, 0, &kind) < 0 || mp_value_get_str(kind, &k, &kl) < 0) {
    rc = mp_set_error(MP_EPROTO, "the manager's reply is not (kind, value)");
  } else {
    mp_value_at(reply, 1, &val);
    const char *text = "";
    if (strcmp(k, "#RETURN") == 0)
      rc = result ? detach(val, result) : 0;
    else if (strcmp(k, "#ERROR") == 0 && exc.kind != MP_PK_EXC_NONE)
      rc = remote_error(&exc);
    else if (strcmp(k, "#TRACEBACK") == 0 || strcmp(k, "#UNSERIALIZABLE") == 0) {
      mp_value_get_str(val, &text, &kl);
      rc = mp_set_error(MP_ETASK, "the manager failed the call: %.400s", text);
    } else
      rc = mp_set_error(MP_EPROTO, "the manager sent a reply of unknown kind '%.40s'", k);
  }
  mp_value_free(reply);
  return rc;
}

/* Sends (ident, method, args, kwds) (takes args and kwds; NULL = empty) and reads the
 * reply. *result (may be NULL) gets what '#RETURN' carried. */
static int call(mp_conn *c, const char *ident, const char *method, mp_value *args, mp_value *kwds,
                int timeout_ms, mp_value **result) {
  mp_value *req = mp_value_tuple();
  if (req == NULL || mp_value_append(req, ident ? mp_value_str(ident) : mp_value_nil()) < 0 ||
      mp_value_append(req, mp_value_str(method)) < 0 ||
      mp_value_append(req, args ? args : mp_value_tuple()) < 0 ||
      mp_value_append(req, kwds ? kwds : mp_value_dict()) < 0) {
    mp_value_free(req);
    return mp_last_error_code();
  }
  void *buf;
  size_t len;
  int rc = mp__pickle_dumps(req, &buf, &len);
  mp_value_free(req);
  if (rc < 0)
    return rc;
  rc = mp_conn_send(c, buf, len);
  free(buf);
  if (rc < 0)
    return rc;
  int wait = timeout_ms < 0 ? MP_FOREVER : timeout_ms + REPLY_MARGIN_MS;
  if ((rc = mp_conn_recv(c, &buf, &len, wait)) < 0)
    return rc == MP_ETIMEDOUT ? mp_set_error(MP_EBROKEN, "the manager did not answer") : rc;
  rc = parse_reply(buf, len, result);
  free(buf);
  return rc;
}

/* A server-level call on a connection of its own. */
static int server_call(mp_manager_client *cl, const char *method, mp_value *args,
                       mp_value **result) {
  mp_conn *c;
  int rc = open_conn(cl, &c);
  if (rc < 0) {
    mp_value_free(args);
    return rc;
  }
  rc = call(c, NULL, method, args, NULL, 0, result);
  mp_conn_free(c);
  return rc;
}

int mp_manager_connect(mp_manager_client **out, const char *address, const char *authkey) {
  if (authkey == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_connect: authkey is NULL");
  return mp_manager_connect_bytes(out, address, authkey, strlen(authkey));
}

int mp_manager_connect_bytes(mp_manager_client **out, const char *address, const void *authkey,
                             size_t keylen) {
  if (out == NULL || address == NULL || (authkey == NULL && keylen > 0))
    return mp_set_error(MP_EINVAL, "mp_manager_connect: c, address or authkey is NULL");
  mp_manager_client *cl = calloc(1, sizeof *cl);
  if (cl == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory allocating a manager client");
  int rc = mp__key_dup(authkey, keylen, &cl->authkey);
  if (rc < 0) {
    free(cl);
    return rc;
  }
  cl->keylen = keylen;
  rc = mp__split_address(address, cl->host, sizeof cl->host, &cl->port);
  if (rc == 0 && cl->host[0] == '\0')
    strcpy(cl->host, "127.0.0.1"); /* ":5000" or "0.0.0.0:5000": this machine */
  if (rc == 0)
    rc = server_call(cl, "dummy", NULL, NULL); /* as BaseManager.connect() */
  if (rc < 0) {
    mp_manager_disconnect(cl);
    return rc;
  }
  *out = cl;
  return 0;
}

void mp_manager_disconnect(mp_manager_client *c) {
  if (c == NULL)
    return;
  mp__key_free(c->authkey, c->keylen);
  free(c);
}

int mp_manager_remote_shutdown(mp_manager_client *c) {
  if (c == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_remote_shutdown: client is NULL");
  int rc = server_call(c, "shutdown", NULL, NULL);
  if (rc != MP_ETASK)
    return rc;
  char why[300]; /* mp_set_error overwrites the message it would be formatting */
  snprintf(why, sizeof why, "%s", mp_last_error());
  return mp_set_error(MP_EPERM, "the manager refused to shut down: %s", why);
}

/* ---- the remote queue proxy --------------------------------------------------------- */

typedef struct rqueue {
  mp_manager_client cl; /* a copy: the proxy does not depend on the client object */
  char ident[64];
  mp_plat_mutex mu;
  mp_conn **idle;
  size_t nidle, cap;
} rqueue;

static int take_conn(rqueue *q, mp_conn **c) {
  mp_plat_mutex_lock(&q->mu);
  *c = q->nidle ? q->idle[--q->nidle] : NULL;
  mp_plat_mutex_unlock(&q->mu);
  if (*c)
    return 0;
  int rc = open_conn(&q->cl, c);
  if (rc < 0)
    return rc;
  char name[MP_THREAD_NAME_MAX + 40];
  snprintf(name, sizeof name, "multiproc-%lld|%s", (long long)mp_getpid(),
           mp_thread_current_name());
  mp_value *args = mp_value_tuple();
  if (args && mp_value_append(args, mp_value_str(name)) < 0)
    args = NULL;
  rc = args ? call(*c, NULL, "accept_connection", args, NULL, 0, NULL) : mp_last_error_code();
  if (rc < 0)
    mp_conn_free(*c);
  return rc;
}

static void give_conn(rqueue *q, mp_conn *c, int rc) {
  /* After a transport error the connection's state is unknown: drop it. */
  if (rc == MP_EEOF || rc == MP_EBROKEN || rc == MP_EPROTO || rc == MP_EOS || rc == MP_ETIMEDOUT ||
      rc == MP_ENOMEM) {
    mp_conn_free(c);
    return;
  }
  mp_plat_mutex_lock(&q->mu);
  if (q->nidle == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 4;
    mp_conn **p = realloc(q->idle, cap * sizeof *p);
    if (p) {
      q->idle = p;
      q->cap = cap;
    }
  }
  if (q->nidle < q->cap) {
    q->idle[q->nidle++] = c;
    c = NULL;
  }
  mp_plat_mutex_unlock(&q->mu);
  mp_conn_free(c);
}

static int method(rqueue *q, const char *name, mp_value *args, mp_value *kwds, int timeout_ms,
                  mp_value **result) {
  mp_conn *c;
  int rc = take_conn(q, &c);
  if (rc < 0) {
    mp_value_free(args);
    mp_value_free(kwds);
    return rc;
  }
  rc = call(c, q->ident, name, args, kwds, timeout_ms, result);
  give_conn(q, c, rc);
  return rc;
}

/* kwds for a timeout: {} forever, {'block': False} for 0, else {'timeout': seconds}. */
static int timeout_kwds(int timeout_ms, mp_value **kwds) {
  if (timeout_ms < MP_FOREVER)
    return mp_set_error(MP_EINVAL, "timeout %d ms: use MP_FOREVER (-1), 0 or more", timeout_ms);
  *kwds = mp_value_dict();
  if (*kwds == NULL)
    return MP_ENOMEM;
  int rc = 0;
  if (timeout_ms == 0)
    rc = mp_value_dict_set(*kwds, mp_value_str("block"), mp_value_bool(0));
  else if (timeout_ms > 0)
    rc = mp_value_dict_set(*kwds, mp_value_str("timeout"), mp_value_double(timeout_ms / 1000.0));
  if (rc < 0) {
    mp_value_free(*kwds);
    return rc;
  }
  return 0;
}

static int r_put_value(void *impl, const mp_value *v, int timeout_ms) {
  mp_value *kwds = NULL, *args = NULL, *item = NULL;
  int rc = timeout_kwds(timeout_ms, &kwds);
  if (rc < 0)
    return rc;
  if ((rc = detach(v, &item)) < 0 || (args = mp_value_tuple()) == NULL ||
      (rc = mp_value_append(args, item)) < 0) {
    mp_value_free(kwds);
    mp_value_free(args);
    return rc < 0 ? rc : MP_ENOMEM;
  }
  return method(impl, "put", args, kwds, timeout_ms, NULL);
}

static int r_put(void *impl, const void *buf, size_t len, int timeout_ms) {
  mp_value *v = mp_value_bytes(buf, len);
  if (v == NULL)
    return mp_last_error_code();
  int rc = r_put_value(impl, v, timeout_ms);
  mp_value_free(v);
  return rc;
}

static int r_get_value(void *impl, mp_value **v, int timeout_ms) {
  mp_value *kwds = NULL;
  int rc = timeout_kwds(timeout_ms, &kwds);
  return rc < 0 ? rc : method(impl, "get", NULL, kwds, timeout_ms, v);
}

static int r_get(void *impl, void **buf, size_t *len, int timeout_ms) {
  mp_value *v = NULL;
  int rc = r_get_value(impl, &v, timeout_ms);
  return rc < 0 ? rc : mp__value_to_bytes(v, buf, len);
}

/* A call without arguments that returns an int or a bool. */
static int simple(rqueue *q, const char *name, int64_t *out) {
  mp_value *v = NULL;
  int rc = method(q, name, NULL, NULL, 0, &v);
  if (rc < 0)
    return rc;
  int b;
  if (mp_value_get_int(v, out) < 0) {
    if (mp_value_get_bool(v, &b) == 0)
      *out = b;
    else
      rc = mp_set_error(MP_EPROTO, "%s() returned something unexpected", name);
  }
  mp_value_free(v);
  return rc;
}

static int r_qsize(void *impl, size_t *n) {
  int64_t i = 0;
  int rc = simple(impl, "qsize", &i);
  if (rc == 0)
    *n = i < 0 ? 0 : (size_t)i;
  return rc;
}

static int r_empty(void *impl) {
  int64_t i = 0;
  int rc = simple(impl, "empty", &i);
  return rc < 0 ? rc : i != 0;
}

static int r_full(void *impl) {
  int64_t i = 0;
  int rc = simple(impl, "full", &i);
  return rc < 0 ? rc : i != 0;
}

static int r_task_done(void *impl) { return method(impl, "task_done", NULL, NULL, 0, NULL); }

static int r_join(void *impl, int timeout_ms) {
  if (timeout_ms != MP_FOREVER)
    return mp_set_error(MP_ENOTSUP, "a remote queue's join has no timeout (queue.Queue.join)");
  return method(impl, "join", NULL, NULL, MP_FOREVER, NULL);
}

static void r_free(void *impl) {
  rqueue *q = impl;
  /* Give back the reference 'create' took, as a Python proxy's finalizer does. */
  mp_value *args = mp_value_tuple();
  if (args && mp_value_append(args, mp_value_str(q->ident)) == 0)
    server_call(&q->cl, "decref", args, NULL);
  else
    mp_value_free(args);
  for (size_t i = 0; i < q->nidle; i++)
    mp_conn_free(q->idle[i]);
  free(q->idle);
  mp__key_free(q->cl.authkey, q->cl.keylen);
  mp_plat_mutex_destroy(&q->mu);
  free(q);
}

static const mp__queue_ops remote_ops = {"remote queue", r_put,   r_get,  r_put_value, r_get_value,
                                         r_qsize,        r_empty, r_full, NULL,        r_task_done,
                                         r_join,         r_free,  NULL};

/* Reads create's reply (ident, exposed) and checks the object is queue-like. */
static int parse_created(mp_value *res, char *ident, size_t size) {
  mp_value *id = NULL, *exp = NULL;
  const char *s;
  size_t n, sl;
  if (mp_value_len(res, &n) < 0 || n != 2 || mp_value_at(res, 0, &id) < 0 ||
      mp_value_at(res, 1, &exp) < 0 || mp_value_get_str(id, &s, &sl) < 0 || sl >= size)
    return mp_set_error(MP_EPROTO, "the manager's answer to 'create' is not (ident, exposed)");
  memcpy(ident, s, sl + 1);
  return 0;
}

int mp_manager_queue(mp_manager_client *c, const char *name, mp_queue **out) {
  if (c == NULL || name == NULL || out == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_queue: an argument is NULL");
  rqueue *q = calloc(1, sizeof *q);
  if (q == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory allocating a queue proxy");
  if (mp__key_dup(c->authkey, c->keylen, &q->cl.authkey) < 0) {
    free(q);
    return MP_ENOMEM;
  }
  memcpy(q->cl.host, c->host, sizeof c->host);
  q->cl.port = c->port;
  q->cl.keylen = c->keylen;
  mp_value *args = mp_value_tuple(), *res = NULL;
  int rc;
  if (args == NULL || mp_value_append(args, mp_value_str(name)) < 0) {
    mp_value_free(args);
    rc = mp_last_error_code();
  } else if ((rc = server_call(c, "create", args, &res)) == MP_ETASK) {
    char why[300]; /* mp_set_error overwrites the message it would be formatting */
    snprintf(why, sizeof why, "%s", mp_last_error());
    rc = mp_set_error(MP_ENOENT, "mp_manager_queue: the manager has no '%s' (%s)", name, why);
  }
  if (rc == 0)
    rc = parse_created(res, q->ident, sizeof q->ident);
  mp_value_free(res);
  if (rc == 0 && (rc = mp_plat_mutex_init(&q->mu)) == 0 &&
      (rc = mp__queue_wrap(out, &remote_ops, q)) < 0)
    mp_plat_mutex_destroy(&q->mu);
  if (rc < 0) {
    mp__key_free(q->cl.authkey, q->cl.keylen);
    free(q);
  }
  return rc;
}
