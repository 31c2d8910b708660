/* What the pool's three roles share: the public calls (pool.c), the master thread
 * (pool_master.c) and the results (pool_result.c). Not part of the public API.
 *
 * A job is what one call waits on: an mp_result (apply), the outputs of a map, or an
 * imap iterator. A task is one message to a worker: one input, a chunk of a map's inputs,
 * or an argument list. The pool's lock guards its queue and state; a job's lock guards
 * the job; the master thread alone touches the workers. */
#ifndef MP_POOL_H
#define MP_POOL_H

#include "multiproc.h"
#include "buf.h"
#include "platform.h"

/* Tasks queued on one worker at most, and their bytes: below every pipe buffer (64 KiB on
 * Windows), so writing to a busy worker never blocks while it writes its results. A larger
 * task goes only to an idle worker, which is reading. */
#define MP__POOL_DEPTH 64
#define MP__POOL_DEPTH_BYTES 16384
#define MP__POOL_MSG_MAX 512
#define MP__POOL_SMALL_BODY 40 /* a task of one small input fits, with its head */

/* ---- jobs (pool_result.c) ------------------------------------------------------------ */

enum { MP__JOB_ONE, MP__JOB_MAP, MP__JOB_IMAP };

typedef struct mp__imap_ent {
  struct mp__imap_ent *next;
  size_t index;
  int code;
  char *msg;
  mp_value *v;
} mp__imap_ent;

struct mp_result {
  mp_plat_mutex mu;
  mp_plat_cond cv;
  int kind;
  size_t n, remaining;
  /* MP__JOB_ONE: out[0], owned. MP__JOB_MAP: the caller's outputs array, written only by
   * the caller's thread while it waits (the master hands answers over undecoded). */
  mp_value **out;
  int taken;  /* MP__JOB_ONE: mp_result_take gave the output away */
  int *codes; /* MP__JOB_MAP: each failed item's code; allocated at the first failure */
  int err;    /* the failure of the lowest failed index */
  size_t err_index;
  char *err_msg;
  mp__imap_ent *qhead, *qtail; /* MP__JOB_IMAP: finished, not yet given */
  /* MP__JOB_MAP: answers as received, for the waiting caller to decode in its own thread
   * (beside the master, and where the outputs will be freed): one record after another,
   * first item u64, item count u32, length u32, the items. The caller swaps in its spare
   * buffer when it takes them, so a long map allocates nothing per answer. */
  mp__buf raw, spare;
  size_t raw_items;
  int caller_waiting;
  size_t given, lost; /* lost: finished items that found no memory to queue */
  mp_result_cb cb;
  void *cb_arg;
  int refs; /* the caller's handle, plus the pool's while items remain */
};
typedef struct mp_result mp__job;

struct mp_imap {
  mp__job *j;
};

/* A new job of kind for n items, with two references (the caller's and the pool's). */
mp__job *mp__job_new(int kind, size_t n);
void mp__job_unref(mp__job *j);
/* Records item idx's outcome (v is taken); the last item runs the callback and drops the
 * pool's reference. */
void mp__job_item_done(mp__job *j, size_t idx, int code, const char *msg, mp_value *v);
/* Records the answer of items first..first+count (r holds their result items, already
 * checked whole by mp__pw_check_results): a map's goes to its caller undecoded. */
void mp__job_answer(mp__job *j, size_t first, size_t count, mp__reader *r);
/* The caller of a map waits (until deadline_ns, or forever when negative), decoding the
 * answers into outputs as they come; then fills codes (may be NULL) and returns as
 * mp_pool_map_ex documents (per_item), or as mp_pool_map (every output NULL on failure).
 * The caller's reference stays (drop it with mp__job_unref). On timeout, on_timeout cancels
 * what the pool still holds of the job before its inputs go away and says how many items
 * it cancelled. */
int mp__map_collect(mp__job *j, mp_value **outputs, int *codes, int per_item, int64_t deadline_ns,
                    int timeout_ms, size_t (*on_timeout)(void *ctx, mp__job *j), void *ctx);

/* ---- tasks and the pool (pool.c, pool_master.c) --------------------------------------- */

typedef struct mp__task {
  struct mp__task *next;
  uint64_t id;
  mp__job *j;
  size_t first, count; /* the job's items this task computes */
  uint32_t fnid;
  unsigned flags;                /* MP__PW_STAR, MP__PW_ARGS */
  const mp_value *const *inputs; /* until encoded: the caller's, valid while it waits */
  unsigned char *body;           /* kept until answered: a dead worker's queue is sent again */
  size_t len;
  unsigned char small[MP__POOL_SMALL_BODY]; /* body, when it fits: no allocation for it */
  mp_plat_handle *handles; /* MP__PW_ARGS: this pool's own copies of the objects' handles */
  size_t nhandles;
} mp__task;

/* Fails every task of a list with code and msg, and frees them. */
void mp__fail_tasks(mp__task *t, int code, const char *msg);
void mp__task_free(mp__task *t);
/* Builds the task's message body from its inputs, using scratch (emptied first) as room. */
int mp__task_encode(mp__task *t, mp__buf *scratch);

typedef struct mp__fnref {
  void (*fn)(void);
  mp__buf ref; /* its encoded reference (target.c), sent once to each worker */
} mp__fnref;

typedef struct mp__worker {
  mp_process *proc; /* NULL: the slot is empty */
  mp_conn *conn;
  int64_t pid;
  int eof, stopping, timed_out;
  int gone;              /* refused its task's handles (Windows): exiting; takes no more work */
  int topping;           /* assign: may get more work in this pass */
  mp__task *head, *tail; /* sent, unanswered; head is running */
  size_t inflight, inflight_bytes, inflight_handles;
  uint64_t assigned, head_start_ns;
  uint32_t fns_known;
  mp__buf out; /* messages for the next write */
} mp__worker;

enum { MP__POOL_OPEN, MP__POOL_CLOSED, MP__POOL_TERMINATING };

struct mp_pool {
  mp_plat_mutex mu; /* guards what callers touch: the queue, fns, state, pids */
  mp_plat_cond cv;
  int nworkers;
  mp__worker *w;   /* the master thread's alone */
  mp_waitable *ws; /* its wait set: the wake pipe, each worker's connection and process */
  mp__worker **who;
  int64_t *pids;
  mp_start_method method;
  mp__buf init_ref; /* the initializer's reference; empty: none */
  mp_value *initargs;
  uint64_t maxtasks;
  int task_timeout_ms; /* 0: no limit */
  mp__fnref *fns;
  size_t nfns;
  mp__task *pend_head, *pend_tail;
  size_t npending;
  mp__buf scratch;        /* room to encode tasks in, under the lock */
  mp__buf answer_bufs[2]; /* a finished map's answer buffers, for the next map: pages that
                             are already touched (a fresh one costs a fault per 4 KiB) */
  mp__task *unsendable;   /* tasks that could not be encoded or given: failed outside the lock */
  char unsendable_msg[MP__POOL_MSG_MAX];
  uint64_t next_id;
  int state, started, start_rc, done, broken;
  char msg[MP__POOL_MSG_MAX]; /* start-up failure, or why no worker can be started */
  mp_conn *wake_r, *wake_w;
  int wake_pending;
  mp_thread *thread;
  int thread_joined;
  unsigned serial;
  /* A pool whose workers are elsewhere (redis_pool.c): its master's state, freed last. */
  struct mp__rpool *remote;
  void (*remote_free)(struct mp__rpool *remote);
};

void mp__pool_lock(mp_pool *p);
void mp__pool_unlock(mp_pool *p);
/* Wakes the master from its wait (the pool's lock held). */
void mp__pool_wake_locked(mp_pool *p);
/* The master's side of a wake-up: empties the wake pipe (pool_master.c). */
void mp__pool_drain_wake(mp_pool *p);
/* The master thread (pool_master.c). */
void mp__pool_thread(void *arg);
/* A master says it started (rc 0) or why it could not (rc < 0, the last error). */
void mp__pool_started(mp_pool *p, int rc);
/* Makes a pool of nworkers (0: mp_cpu_count()) whose master is thread(pool), with remote
 * (may be NULL) as its remote state, and waits until the master says it started. The
 * pool frees remote with remote_free, also when this fails. */
int mp__pool_create_with(mp_pool **pool, int nworkers, const mp_pool_opts *opts,
                         void (*thread)(void *), struct mp__rpool *remote,
                         void (*remote_free)(struct mp__rpool *));

#endif /* MP_POOL_H */
