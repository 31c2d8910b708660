/* The manager's server: Python's multiprocessing.managers.Server for registered queues.
 * It works in stages (see manager.h): the front stage (manager_front.c) accepts and runs
 * every handshake in one thread without blocking; an authenticated connection then gets a
 * serving thread of its own (at most max_connections at once), which reads requests and
 * lets the dispatcher (manager_dispatch.c) answer them. Nothing is unpickled before
 * authentication, frames are bounded, a handshake has a deadline, and the owner can learn
 * how serving goes and when it ended (mp_manager_get_status, mp_manager_wait). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"
#include "manager.h"

#define DEFAULT_MAX_CONNECTIONS 64
#define DEFAULT_MAX_HANDSHAKES 1024
#define DEFAULT_HANDSHAKE_MS 5000
#define DEFAULT_MAX_MESSAGE ((size_t)64 << 20)
#define NAME_MAX_LEN 200
#define MANAGER_BACKLOG 4096  /* connections the kernel queues before the front stage accepts them \
                               */
#define ALIVE_CHECK_MS 250    /* how often a blocked call looks whether its client is there */
#define SHUTDOWN_GRACE_MS 200 /* a request in progress may finish its reply this long */

static void opts_defaults(mp_manager_opts *o, const mp_manager_opts *in) {
  memset(o, 0, sizeof *o);
  if (in)
    *o = *in;
  if (o->max_connections <= 0)
    o->max_connections = DEFAULT_MAX_CONNECTIONS;
  if (o->max_handshakes <= 0)
    o->max_handshakes = DEFAULT_MAX_HANDSHAKES;
  if (o->handshake_timeout_ms <= 0)
    o->handshake_timeout_ms = DEFAULT_HANDSHAKE_MS;
  if (o->max_message == 0)
    o->max_message = DEFAULT_MAX_MESSAGE;
}

static int manager_new(mp_manager **out, const void *key, size_t keylen,
                       const mp_manager_opts *opts) {
  if (keylen == 0 && !(opts && opts->allow_empty_authkey))
    return mp_set_error(MP_EINVAL, "mp_manager_create: an empty authkey lets anyone in; set "
                                   "opts.allow_empty_authkey to allow it");
  mp_manager *m = calloc(1, sizeof *m);
  if (m == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory allocating a manager");
  int rc = mp__key_dup(key, keylen, &m->authkey);
  if (rc == 0 && (rc = mp_plat_mutex_init(&m->mu)) == 0 &&
      (rc = mp_plat_cond_init(&m->changed)) < 0)
    mp_plat_mutex_destroy(&m->mu);
  if (rc < 0) {
    mp__key_free(m->authkey, keylen);
    free(m);
    return rc;
  }
  m->keylen = keylen;
  opts_defaults(&m->opts, opts);
  *out = m;
  return 0;
}

int mp__manager_create_unbound(mp_manager **m, const void *key, size_t keylen,
                               const mp_manager_opts *opts) {
  return manager_new(m, key, keylen, opts);
}

int mp_manager_create(mp_manager **out, const char *address, const char *authkey,
                      const mp_manager_opts *opts) {
  if (authkey == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_create: authkey is NULL");
  return mp_manager_create_bytes(out, address, authkey, strlen(authkey), opts);
}

int mp_manager_create_bytes(mp_manager **out, const char *address, const void *authkey,
                            size_t keylen, const mp_manager_opts *opts) {
  if (out == NULL || address == NULL || (authkey == NULL && keylen > 0))
    return mp_set_error(MP_EINVAL, "mp_manager_create: m, address or authkey is NULL");
  char host[64];
  int port;
  mp_manager *m;
  int rc = mp__split_address(address, host, sizeof host, &port);
  if (rc == 0)
    rc = manager_new(&m, authkey, keylen, opts);
  if (rc < 0)
    return rc;
  /* A deep accept queue (the kernel caps it at net.core.somaxconn): when it is full, the
   * kernel drops a newcomer's SYN and a good client waits a second for its retransmission,
   * whatever the front stage would have done. The front stage accepts at once and applies
   * its own limits (max_handshakes, the oldest handshake dropped first) to a flood. */
  if ((rc = mp_plat_tcp_listen(&m->listener, host, port, MANAGER_BACKLOG)) < 0) {
    mp_manager_free(m);
    return rc;
  }
  snprintf(m->address, sizeof m->address, "%s:%d", host[0] ? host : "0.0.0.0",
           mp_plat_tcp_port(m->listener));
  *out = m;
  return 0;
}

const char *mp_manager_address(const mp_manager *m) { return m ? m->address : ""; }

mp__reg_obj *mp__manager_find_name(mp_manager *m, const char *name) {
  for (size_t i = 0; i < m->nobjs; i++)
    if (strcmp(m->objs[i].name, name) == 0)
      return &m->objs[i];
  return NULL;
}

mp__reg_obj *mp__manager_find_ident(mp_manager *m, const char *ident) {
  for (size_t i = 0; i < m->nobjs; i++)
    if (strcmp(m->objs[i].ident, ident) == 0)
      return &m->objs[i];
  return NULL;
}

int mp_manager_register_queue(mp_manager *m, const char *name, size_t maxsize) {
  if (m == NULL || name == NULL || name[0] == '\0' || strlen(name) > NAME_MAX_LEN)
    return mp_set_error(MP_EINVAL, "mp_manager_register_queue: bad manager or name");
  if (m->state != MP__ST_CREATED)
    return mp_set_error(MP_ESTATE, "mp_manager_register_queue: register before serving");
  if (mp__manager_find_name(m, name))
    return mp_set_error(MP_EBUSY, "mp_manager_register_queue: '%s' is already registered", name);
  mp__reg_obj *objs = realloc(m->objs, (m->nobjs + 1) * sizeof *objs);
  if (objs == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory registering '%s'", name);
  m->objs = objs;
  mp__reg_obj *o = &objs[m->nobjs];
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
  mp__reg_obj *o = mp__manager_find_name(m, name);
  if (o == NULL)
    return mp_set_error(MP_ENOENT, "mp_manager_local_queue: nothing registered as '%s'", name);
  return mp__squeue_local(o->q, q);
}

size_t mp__manager_waiters(mp_manager *m, const char *name) {
  mp__reg_obj *o = mp__manager_find_name(m, name);
  return o ? mp__squeue_waiters(o->q) : 0;
}

void mp__manager_note(mp_manager *m, int is_accept_error, const char *what) {
  mp_plat_mutex_lock(&m->mu);
  if (is_accept_error)
    m->st.accept_errors++;
  snprintf(m->st.last_error, sizeof m->st.last_error, "%s", what);
  mp_plat_mutex_unlock(&m->mu);
}

void mp__manager_stop(mp_manager *m, int remote) {
  mp_plat_mutex_lock(&m->mu);
  if (!m->stopping)
    m->st.ended = remote ? MP_MANAGER_ENDED_REMOTE : MP_MANAGER_ENDED_SHUTDOWN;
  m->stopping = 1;
  mp_plat_atomic_add(&m->cancel, 1);
  mp_plat_cond_broadcast(&m->changed);
  mp_plat_mutex_unlock(&m->mu);
  if (m->listener)
    mp_plat_tcp_wake(m->listener);
}

/* ---- serving threads --------------------------------------------------------------- */

typedef struct mp__job {
  mp_manager *m;
  mp_conn *conn;
  int first_ms;
  mp__live_conn link;
  mp_plat_thread *thread;
  struct mp__job *next_done; /* on m->done once the thread's work is over */
} job;

/* Marks the connection busy (a request is being handled) or idle (waiting for the next);
 * going idle fails once the manager is stopping. */
static int set_busy(mp_manager *m, mp__live_conn *l, int busy) {
  mp_plat_mutex_lock(&m->mu);
  l->busy = busy;
  int stop = !busy && m->stopping;
  mp_plat_mutex_unlock(&m->mu);
  return stop ? -1 : 0;
}

static int conn_send(void *io, const void *buf, size_t len) { return mp_conn_send(io, buf, len); }

static int conn_alive(void *io) { return !mp_plat_tcp_peer_gone(mp__conn_chan(io)); }

/* Serves one authenticated connection: requests until the client leaves or a
 * server-level call was answered (Server.handle_request, then serve_client). */
static void serve(job *j) {
  mp__session s = {j->m, 0, conn_send, j->conn, {conn_alive, j->conn, ALIVE_CHECK_MS}};
  mp_conn_set_max_message(j->conn, j->m->opts.max_message);
  mp__conn_set_staged(j->conn, 0); /* a request in one read */
  for (int first = 1;; first = 0) {
    void *buf = NULL;
    size_t len = 0;
    if (set_busy(j->m, &j->link, 0) < 0)
      return;
    int rc = mp_conn_recv(j->conn, &buf, &len, first ? j->first_ms : MP_FOREVER);
    set_busy(j->m, &j->link, 1);
    if (rc == MP_EPROTO && mp__conn_skipping(j->conn)) /* over max_message: skipped */
      rc = mp__dispatch_oversized(&s);
    else if (rc == 0) {
      rc = mp__dispatch(&s, buf, len);
      free(buf);
    }
    if (rc != MP__KEEP)
      return; /* answered, the client is gone, a malformed frame, or stopping */
  }
}

static void serve_thread(void *arg) {
  job *j = arg;
  mp_manager *m = j->m;
  serve(j);
  mp_plat_mutex_lock(&m->mu);
  for (mp__live_conn **p = &m->conns; *p; p = &(*p)->next)
    if (*p == &j->link) {
      *p = j->link.next;
      break;
    }
  mp_conn_free(j->conn);
  /* Joined (not detached) later: a manager that is freed has no thread left running, not
   * even one still running its thread-exit destructors. */
  j->next_done = m->done;
  m->done = j;
  m->nconns--;
  m->st.connections = (size_t)m->nconns;
  mp_plat_cond_broadcast(&m->changed);
  mp_plat_mutex_unlock(&m->mu);
  if (m->listener)
    mp_plat_tcp_wake(m->listener); /* a slot is free: the front stage may hand one over */
}

/* Joins the serving threads that have finished their work. */
static void reap_done(mp_manager *m) {
  mp_plat_mutex_lock(&m->mu);
  job *j = m->done;
  m->done = NULL;
  mp_plat_mutex_unlock(&m->mu);
  while (j) {
    job *next = j->next_done;
    if (mp_plat_thread_wait(j->thread, -1) == 0)
      mp_plat_thread_reap(j->thread);
    free(j);
    j = next;
  }
}

int mp__manager_serve_conn(mp_manager *m, mp_plat_chan *chan, int first_ms) {
  reap_done(m);
  mp_plat_mutex_lock(&m->mu);
  int full = m->nconns >= m->opts.max_connections || m->stopping;
  mp_plat_mutex_unlock(&m->mu);
  if (full) {
    mp_plat_chan_close(chan);
    return mp_set_error(MP_EBUSY, "every serving thread is busy, or the manager is stopping");
  }
  job *j = calloc(1, sizeof *j);
  mp_conn *c = NULL;
  int rc = j ? mp__conn_from_chan(chan, &c) : mp_set_error(MP_ENOMEM, "out of memory");
  if (rc < 0) {
    if (j == NULL)
      mp_plat_chan_close(chan);
    free(j);
    return rc;
  }
  j->m = m;
  j->conn = c;
  j->first_ms = first_ms;
  j->link.chan = chan;
  mp_plat_mutex_lock(&m->mu);
  j->link.next = m->conns;
  m->conns = &j->link;
  m->nconns++;
  m->st.connections = (size_t)m->nconns;
  /* j->thread is set before the thread can finish: it needs m->mu, held here. */
  if ((rc = mp_plat_thread_start(&j->thread, serve_thread, j)) < 0) {
    m->conns = j->link.next;
    m->st.connections = (size_t)--m->nconns;
  }
  mp_plat_mutex_unlock(&m->mu);
  if (rc < 0) {
    mp_conn_free(c);
    free(j);
  }
  return rc;
}

/* Ends every connection and blocked call, then waits for the serving threads. A request
 * in progress gets SHUTDOWN_GRACE_MS to write its reply (a remote 'shutdown' answers this
 * way); then its socket is shut too, so a client that does not read cannot hold us. */
static void stop_all(mp_manager *m) {
  for (size_t i = 0; i < m->nobjs; i++)
    mp__squeue_close(m->objs[i].q);
  mp_plat_mutex_lock(&m->mu);
  m->stopping = 1;
  for (mp__live_conn *l = m->conns; l; l = l->next)
    if (!l->busy)
      mp_plat_tcp_shutdown(l->chan);
  int64_t grace = (int64_t)mp_plat_monotonic_ns() + (int64_t)SHUTDOWN_GRACE_MS * 1000000;
  while (m->nconns > 0 && mp_plat_cond_wait(&m->changed, &m->mu, grace) == 0) {
  }
  for (mp__live_conn *l = m->conns; l; l = l->next)
    mp_plat_tcp_shutdown(l->chan);
  while (m->nconns > 0)
    mp_plat_cond_wait(&m->changed, &m->mu, -1);
  mp_plat_mutex_unlock(&m->mu);
  reap_done(m);
  mp_plat_mutex_lock(&m->mu);
  m->state = MP__ST_STOPPED;
  m->st.serving = 0;
  mp_plat_cond_broadcast(&m->changed);
  mp_plat_mutex_unlock(&m->mu);
}

static void serve_all(mp_manager *m) {
  mp__manager_front(m);
  stop_all(m);
}

static void front_thread(void *arg) { serve_all(arg); }

static int begin(mp_manager *m, const char *fn) {
  if (m->listener == NULL)
    return mp_set_error(MP_ESTATE, "%s: this manager listens nowhere", fn);
  mp_plat_mutex_lock(&m->mu);
  int ok = m->state == MP__ST_CREATED;
  if (ok) {
    m->state = MP__ST_SERVING;
    m->st.serving = 1;
  }
  mp_plat_mutex_unlock(&m->mu);
  return ok ? 0 : mp_set_error(MP_ESTATE, "%s: the manager is already serving or shut down", fn);
}

int mp_manager_start(mp_manager *m) {
  if (m == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_start: manager is NULL");
  int rc = begin(m, "mp_manager_start");
  if (rc == 0 && (rc = mp_plat_thread_start(&m->thread, front_thread, m)) < 0) {
    mp_plat_mutex_lock(&m->mu);
    m->state = MP__ST_CREATED;
    m->st.serving = 0;
    mp_plat_mutex_unlock(&m->mu);
  }
  return rc;
}

int mp_manager_serve_forever(mp_manager *m) {
  if (m == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_serve_forever: manager is NULL");
  int rc = begin(m, "mp_manager_serve_forever");
  if (rc == 0)
    serve_all(m);
  return rc;
}

int mp_manager_shutdown(mp_manager *m) {
  if (m == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_shutdown: manager is NULL");
  mp__manager_stop(m, 0);
  mp_plat_mutex_lock(&m->mu);
  if (m->state == MP__ST_CREATED)
    m->state = MP__ST_STOPPED;
  while (m->state != MP__ST_STOPPED) /* serve_forever in another thread finishes its stop */
    mp_plat_cond_wait(&m->changed, &m->mu, -1);
  mp_plat_thread *t = m->thread;
  m->thread = NULL;
  mp_plat_mutex_unlock(&m->mu);
  if (t && mp_plat_thread_wait(t, -1) == 0)
    mp_plat_thread_reap(t);
  return 0;
}

int mp_manager_get_status(mp_manager *m, mp_manager_status *st) {
  if (m == NULL || st == NULL)
    return mp_set_error(MP_EINVAL, "mp_manager_get_status: m or st is NULL");
  mp_plat_mutex_lock(&m->mu);
  *st = m->st;
  mp_plat_mutex_unlock(&m->mu);
  return 0;
}

int mp_manager_wait(mp_manager *m, int timeout_ms) {
  if (m == NULL || timeout_ms < MP_FOREVER)
    return mp_set_error(MP_EINVAL, "mp_manager_wait: m is NULL or the timeout is negative");
  int64_t deadline =
      timeout_ms < 0 ? -1 : (int64_t)mp_plat_monotonic_ns() + (int64_t)timeout_ms * 1000000;
  mp_plat_mutex_lock(&m->mu);
  int rc = m->state == MP__ST_CREATED
               ? mp_set_error(MP_ESTATE, "mp_manager_wait: the manager was never started")
               : 0;
  while (rc == 0 && m->state != MP__ST_STOPPED)
    if (mp_plat_cond_wait(&m->changed, &m->mu, deadline) == MP_ETIMEDOUT &&
        m->state != MP__ST_STOPPED)
      rc = mp_set_error(MP_ETIMEDOUT, "mp_manager_wait: the manager is still serving");
  mp_plat_mutex_unlock(&m->mu);
  return rc;
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
  mp__key_free(m->authkey, m->keylen);
  free(m);
}
