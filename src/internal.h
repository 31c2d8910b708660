/* Helpers shared by the core files. Not part of the public API. */
#ifndef MP_INTERNAL_H
#define MP_INTERNAL_H

#include "multiproc.h"

/* Sets the thread's error to "<what>: <OS error text> (OS error N)" from the last OS
 * error and returns MP_EOS. Used right after a failed OS call in a backend. */
int mp__os_error(const char *what);

/* Like mp__os_error for a known OS error number and a chosen MP_E* code. */
int mp__os_error_code(int code, long os_err, const char *what);

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
int mp__utf8_valid(const char *s, size_t n);

/* ---- objects that travel to a child in mp_args (args.c, process.c) ------------------ */

#include "platform.h"

/* Under fork the child uses the parent's object as it is. Under spawn the parent exports
 * the object as a small blob plus the OS handles it needs; process.c hands exactly those
 * handles to the child (the same fd numbers on POSIX; duplicated into the child on Windows
 * with the child's values substituted) and the child imports them into a fresh object,
 * which it releases after the target returns. */
#define MP_XFER_MAX_HANDLES 8 /* a joinable queue needs 7 */
#define MP_XFER_MAX_BLOB 256

typedef struct mp__xfer {
  unsigned char blob[MP_XFER_MAX_BLOB];
  size_t blob_len;
  mp_plat_handle handles[MP_XFER_MAX_HANDLES];
  size_t nhandles;
} mp__xfer;

typedef struct mp__xfer_type {
  uint8_t id;       /* stable; the MessagePack extension type on the wire */
  const char *name; /* for messages: "connection", "queue", ... */
  /* Fills out with what a spawned child needs; the handles stay owned by obj. */
  int (*export_obj)(void *obj, mp__xfer *out);
  /* In the child: builds a new object from the blob and the child's handles. */
  int (*import_obj)(const mp__xfer *in, void **obj);
  /* In the child, after the target returns: frees what import_obj built. */
  void (*release_imported)(void *obj);
} mp__xfer_type;

/* Ids in use; one line per passable type, listed in args.c's registry. */
enum {
  MP_XFER_CONN = 1,
  MP_XFER_QUEUE = 2,
  MP_XFER_PLOCK = 3,
  MP_XFER_PSEM = 4,
  MP_XFER_PEVENT = 5,
  MP_XFER_SHM = 6,
  MP_XFER_SHARED = 7 /* a Value/Array: shared memory plus its lock (shm.c) */
};

/* Appends any passable object; the public mp_args_add_<kind> functions wrap this. */
int mp__args_add_object(mp_args *args, const mp__xfer_type *type, void *obj);
/* Reads argument i as an object of the given type (MP_EINVAL if it is another type). */
int mp__args_get_object(const mp_args *args, size_t i, const mp__xfer_type *type, void **obj);

/* Looks up a passable type by id (the registry in args.c); NULL if unknown. */
const mp__xfer_type *mp__xfer_lookup(uint8_t id);

/* Encodes args for a spawned child as MessagePack into *buf (malloc'd) and appends the OS
 * handles the objects need to handles[*nhandles..max). */
int mp__args_encode(const mp_args *args, char **buf, size_t *len, mp_plat_handle *handles,
                    size_t *nhandles, size_t max);
/* In the child: decodes args, importing objects with the child's handle values. */
int mp__args_decode(const char *buf, size_t len, const mp_plat_handle *handles, size_t nhandles,
                    mp_args **out);
/* Deep-copies args (strings and bytes copied, objects shared). */
int mp__args_copy(const mp_args *src, mp_args **out);

/* ---- connections (connection.c) and waiting (wait.c) -------------------------------- */

/* How a connection travels to a spawned child: handles[0] is its channel's handle; the
 * blob holds its directions and maximum message size. Exporting a connection that is in
 * the middle of receiving a message fails with MP_ESTATE (the child could not continue
 * the frame). */
extern const mp__xfer_type mp__conn_xfer;

/* Wraps a received duplex channel handle in a connection with default limits (the spawn
 * bootstrap's connection in a child). */
int mp__conn_wrap_handle(mp_plat_handle h, mp_conn **out);

/* The connection's channel (NULL once closed); for tests that inject raw bytes. */
mp_plat_chan *mp__conn_chan(mp_conn *c);

/* Implemented by process.c: a handle that becomes ready (POSIX: pollable, e.g. a pidfd;
 * Windows: the process HANDLE) when the process exits, owned by p and valid until
 * mp_process_free, also after join. MP_PLAT_INVALID if the process was never started
 * (mp_wait then fails with MP_ESTATE). */
mp_plat_handle mp__process_wait_handle(mp_process *p);
/* ---- threads and synchronisation (sync.c, psync.c, shm.c) --------------------------- */

/* Turns a public timeout (MP_FOREVER, 0, or milliseconds) into a monotonic deadline in ns
 * (-1: forever). Returns 0, or MP_EINVAL for a timeout below MP_FOREVER. */
int mp__deadline_ns(int timeout_ms, int64_t *deadline_ns);

/* The passable process-shared objects (psync.c, shm.c). */
extern const mp__xfer_type mp__plock_xfer;
extern const mp__xfer_type mp__psem_xfer;
extern const mp__xfer_type mp__pevent_xfer;
extern const mp__xfer_type mp__shm_xfer;
extern const mp__xfer_type mp__shared_xfer;
/* ---- subprocesses (popen.c) ---------------------------------------------------------- */

/* Reaps every finished child of mp_popen that was freed while still running; mp_shutdown
 * calls it. Never blocks. */
void mp__popen_reap_all(void);

/* Tests only (POSIX): closes the child's pidfd so that timed waits take the path of kernels
 * without pidfds. */
void mp__popen_drop_wait_handle(mp_popen *p);

/* ---- queues: one public API over several implementations (queue.c) ---------------- */

/* What a queue implementation provides: the local inter-process queue and the manager's
 * remote proxy both plug in here. Every function gets the impl pointer given to
 * mp__queue_wrap. Any entry may be NULL: the call then fails with MP_ENOTSUP. */
typedef struct mp__queue_ops {
  const char *kind; /* for messages: "queue", "remote queue" */
  int (*put)(void *impl, const void *buf, size_t len, int timeout_ms);
  int (*get)(void *impl, void **buf, size_t *len, int timeout_ms);
  int (*put_value)(void *impl, const mp_value *v, int timeout_ms);
  int (*get_value)(void *impl, mp_value **v, int timeout_ms);
  int (*qsize)(void *impl, size_t *n);
  int (*empty)(void *impl);
  int (*full)(void *impl);
  int (*close)(void *impl);
  int (*task_done)(void *impl);
  int (*join)(void *impl, int timeout_ms);
  void (*free)(void *impl);
} mp__queue_ops;

/* Makes a public queue object over an implementation (which it frees with ops->free). */
int mp__queue_wrap(mp_queue **q, const mp__queue_ops *ops, void *impl);
/* The implementation behind a queue if it has the given ops, else NULL. */
void *mp__queue_impl(mp_queue *q, const mp__queue_ops *ops);

/* How a local queue travels to a spawned child (queue_local.c). */
extern const mp__xfer_type mp__queue_xfer;
/* ---- managers: the pickle subset (pickle.c) and the wire helpers (manager_wire.c) ---- */

/* What memo references in one pickle may expand to, in values copied. */
#define MP_PICKLE_MEMO_NODES (1u << 20)

/* The exception classes the pickle subset knows (allowlisted globals). */
enum {
  MP_PK_EXC_NONE = 0,
  MP_PK_EXC_EMPTY,     /* queue.Empty */
  MP_PK_EXC_FULL,      /* queue.Full */
  MP_PK_EXC_VALUE,     /* builtins.ValueError */
  MP_PK_EXC_TYPE,      /* builtins.TypeError */
  MP_PK_EXC_ATTRIBUTE, /* builtins.AttributeError */
  MP_PK_EXC_KEY,       /* builtins.KeyError */
  MP_PK_EXC_RUNTIME,   /* builtins.RuntimeError */
  MP_PK_EXC_EXCEPTION  /* builtins.Exception */
};

/* An exception instance found while reading (the first one; it reads as None in place). */
typedef struct mp__pk_exc {
  int kind;      /* MP_PK_EXC_* */
  char msg[256]; /* its first argument if that was a string */
} mp__pk_exc;

/* Pickles v (protocol 4 opcodes, no frames) into *buf (free with free()). */
int mp__pickle_dumps(const mp_value *v, void **buf, size_t *len);
/* Pickles the reply (kind, v), e.g. ('#RETURN', v), without taking v. */
int mp__pickle_dumps_pair(const char *kind, const mp_value *v, void **buf, size_t *len);
/* Pickles the reply ('#ERROR', <kind>(msg)) (msg NULL or "": no arguments). */
int mp__pickle_dumps_error(int kind, const char *msg, void **buf, size_t *len);
/* Unpickles buf (protocols 2-5) into *out; exc (may be NULL) receives an exception
 * instance. Anything outside the subset is MP_EPROTO with a message naming it. */
int mp__pickle_loads(const void *buf, size_t len, mp_value **out, mp__pk_exc *exc);
/* The Python class name of an MP_PK_EXC_* kind ("Empty"). */
const char *mp__pickle_exc_name(int kind);

/* Largest frame during the handshake, as Python's recv_bytes(256). */
#define MP_MANAGER_HANDSHAKE_MAX 256

/* Python's multiprocessing.connection authentication over an open connection. The server
 * side delivers its challenge first, then answers the client's; the client the reverse.
 * Both give MP_EAUTH on a wrong key (after sending #FAILURE# where Python does). */
int mp__auth_deliver(mp_conn *c, const void *key, size_t keylen, int timeout_ms);
int mp__auth_answer(mp_conn *c, const void *key, size_t keylen, int timeout_ms);
/* Compares two buffers in time that depends only on their length. 1 if equal. */
int mp__ct_equal(const void *a, const void *b, size_t n);
/* Splits "host:port" (IPv4 or name; "" or "0.0.0.0" host: all interfaces). */
int mp__split_address(const char *address, char *host, size_t hostsize, int *port);
/* A connection over an accepted or connected socket channel. */
int mp__conn_from_chan(mp_plat_chan *chan, mp_conn **out);

/* The queue a manager serves (manager_queue.c). put takes v on success; get's alive(arg)
 * (may be NULL) says whether the client it serves is still there: MP_EBROKEN if not. */
typedef struct mp__squeue mp__squeue;
int mp__squeue_create(mp__squeue **q, size_t maxsize);
void mp__squeue_free(mp__squeue *q);
int mp__squeue_put(mp__squeue *q, mp_value *v, int timeout_ms);
int mp__squeue_get(mp__squeue *q, mp_value **v, int timeout_ms, int (*alive)(void *),
                   void *arg);
/* Puts an item back at the front (a reply that could not be delivered). */
void mp__squeue_unget(mp__squeue *q, mp_value *v);
size_t mp__squeue_qsize(mp__squeue *q);
size_t mp__squeue_maxsize(const mp__squeue *q);
/* How many gets are blocked on q now. */
size_t mp__squeue_waiters(mp__squeue *q);
/* Tests: the number of gets blocked on the queue registered as name (0 if unknown). */
size_t mp__manager_waiters(mp_manager *m, const char *name);
int mp__squeue_task_done(mp__squeue *q);
int mp__squeue_join(mp__squeue *q, int timeout_ms);
/* Wakes every waiter with MP_ECLOSED; later calls fail the same way. */
void mp__squeue_close(mp__squeue *q);
/* A public queue handle onto q that does not own it. */
int mp__squeue_local(mp__squeue *q, mp_queue **out);
/* Frees v and returns its bytes (a bytes value) or its MessagePack encoding (other). */
int mp__value_to_bytes(mp_value *v, void **buf, size_t *len);

#endif /* MP_INTERNAL_H */
