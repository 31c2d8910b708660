/* The manager's server, split in stages, and what its server and client share. Not part
 * of the public API.
 *   manager.c           the public calls, the registry, serving threads, shutdown, status
 *   manager_front.c     the front stage: one thread accepts and runs every handshake
 *                       without blocking, then hands authenticated connections over
 *   manager_dispatch.c  one request's bytes in, one reply's bytes out (no sockets)
 *   manager_queue.c     the served queues
 *   manager_wire.c      addresses and authkey copies (shared with manager_client.c) */
#ifndef MP_MANAGER_H
#define MP_MANAGER_H

#include <stddef.h>
#include <stdint.h>

#include "multiproc.h"
#include "platform.h"

/* A copy of an authkey (any bytes, NUL-terminated for convenience) and its release, which
 * zeroes the copy before freeing it. */
int mp__key_dup(const void *key, size_t len, char **out);
void mp__key_free(char *key, size_t len);
/* Splits "host:port" (IPv4 or name; "" or "0.0.0.0" host: all interfaces). */
int mp__split_address(const char *address, char *host, size_t hostsize, int *port);

/* ---- the served queues (manager_queue.c) --------------------------------------------- */

/* Who a blocking call waits for: alive(arg) says whether that client is still connected;
 * a waiting call looks every check_ms and gives MP_EBROKEN once it is gone. */
typedef struct mp__waiter {
  int (*alive)(void *arg);
  void *arg;
  int check_ms;
} mp__waiter;

/* put takes v on success. w may be NULL (the master's own calls). */
typedef struct mp__squeue mp__squeue;
int mp__squeue_create(mp__squeue **q, size_t maxsize);
void mp__squeue_free(mp__squeue *q);
int mp__squeue_put(mp__squeue *q, mp_value *v, int timeout_ms, const mp__waiter *w);
int mp__squeue_get(mp__squeue *q, mp_value **v, int timeout_ms, const mp__waiter *w);
/* Puts an item back at the front (a reply that could not be delivered). */
void mp__squeue_unget(mp__squeue *q, mp_value *v);
size_t mp__squeue_qsize(mp__squeue *q);
size_t mp__squeue_maxsize(const mp__squeue *q);
/* How many calls (get, put, join) are blocked on q now. */
size_t mp__squeue_waiters(mp__squeue *q);
int mp__squeue_task_done(mp__squeue *q);
int mp__squeue_join(mp__squeue *q, int timeout_ms, const mp__waiter *w);
/* Wakes every waiter with MP_ECLOSED; later calls fail the same way. */
void mp__squeue_close(mp__squeue *q);
/* A public queue handle onto q that does not own it. */
int mp__squeue_local(mp__squeue *q, mp_queue **out);
/* Frees v and returns its bytes (a bytes value) or its MessagePack encoding (other). */
int mp__value_to_bytes(mp_value *v, void **buf, size_t *len);

/* ---- the server ------------------------------------------------------------------------ */

typedef struct mp__reg_obj {
  char *name; /* the typeid, e.g. "get_task_queue" */
  char ident[24];
  mp__squeue *q;
  long refs; /* Python's id_to_refcount, kept for incref/decref; the queue lives on */
} mp__reg_obj;

typedef struct mp__live_conn {
  mp_plat_chan *chan;
  int busy; /* handling a request: shutdown lets it finish for a short grace time */
  struct mp__live_conn *next;
} mp__live_conn;

enum { MP__ST_CREATED, MP__ST_SERVING, MP__ST_STOPPED };

struct mp_manager {
  char address[80];
  char *authkey;
  size_t keylen;
  mp_manager_opts opts;
  mp_plat_listener *listener; /* NULL for a manager that only dispatches (the fuzzer's) */
  mp_plat_mutex mu;
  mp_plat_cond changed; /* nconns or state changed */
  int state, stopping;  /* under mu */
  int64_t cancel;       /* 1 once stopping: long pickle reads stop (read atomically) */
  int nconns;           /* serving threads running */
  mp__live_conn *conns; /* their connections */
  struct mp__job *done; /* finished serving threads, to be joined */
  mp__reg_obj *objs;    /* fixed once serving starts */
  size_t nobjs;
  mp_plat_thread *thread; /* mp_manager_start's */
  mp_manager_status st;   /* under mu */
};

/* Creates a manager that listens nowhere: the fuzzer dispatches requests to it. */
int mp__manager_create_unbound(mp_manager **m, const void *key, size_t keylen,
                               const mp_manager_opts *opts);
/* Stops serving (a remote 'shutdown' when remote is set); any thread. */
void mp__manager_stop(mp_manager *m, int remote);
/* Records a transient failure (accept, a serving thread that could not start) in the
 * status the owner reads. */
void mp__manager_note(mp_manager *m, int is_accept_error, const char *what);
mp__reg_obj *mp__manager_find_ident(mp_manager *m, const char *ident);
mp__reg_obj *mp__manager_find_name(mp_manager *m, const char *name);
/* Tests: the calls blocked on the queue registered as name (0 if unknown). */
size_t mp__manager_waiters(mp_manager *m, const char *name);

/* Starts a serving thread for an authenticated connection (chan is taken, and closed on
 * failure); first_ms bounds the wait for its first request. MP_EBUSY when
 * max_connections threads already serve or the manager is stopping. */
int mp__manager_serve_conn(mp_manager *m, mp_plat_chan *chan, int first_ms);
/* The front stage (manager_front.c): accepts and authenticates until m is stopping. */
void mp__manager_front(mp_manager *m);

/* ---- one connection's requests (manager_dispatch.c) ------------------------------------ */

typedef struct mp__session {
  mp_manager *m;
  int accepted; /* after 'accept_connection': method calls, until the client leaves */
  /* Writes one reply frame: 0, or an error once the client is gone. */
  int (*send)(void *io, const void *buf, size_t len);
  void *io;
  mp__waiter wait; /* for calls that block */
} mp__session;

enum { MP__KEEP = 0, MP__CLOSE = 1 };

/* Handles one request (a frame's bytes) and writes its reply. MP__KEEP: read the next
 * request; MP__CLOSE: the connection's work is done (a server-level call was answered);
 * < 0: close now (the client is gone, or the server is stopping). */
int mp__dispatch(mp__session *s, const void *req, size_t len);
/* Answers a request frame longer than max_message (skipped unread) with a ValueError. */
int mp__dispatch_oversized(mp__session *s);

#endif /* MP_MANAGER_H */
