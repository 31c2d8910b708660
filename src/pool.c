/* Process pools, like multiprocessing.Pool, built so that a dying worker never hangs
 * anything. One thread per pool (the master) owns the workers: it talks to each one over
 * its own connection, hands out tasks itself (no lock is shared with the workers, so none
 * can die holding it), and waits with mp_wait on every worker's connection and process at
 * once. Several tasks are queued on each worker (pipelining) to keep it busy; since a
 * worker answers in order, the oldest unanswered task of a dead worker is the one it was
 * running: that one fails with MP_EWORKER and the ones queued behind it go to others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"
#include "deadline.h"
#include "pool_wire.h"
#include "proc.h"

/* Tasks queued on one worker at most, and their bytes: below every pipe buffer (64 KiB
 * on Windows), so writing to a busy worker never blocks while it writes its results. A
 * larger task goes only to an idle worker, which is reading. */
#define DEPTH 64
#define DEPTH_BYTES 16384
#define MSG_MAX 512

/* ---- results: one per apply_async, map or imap_unordered call -------------------------- */

enum { JOB_ONE, JOB_MAP, JOB_IMAP };

typedef struct imap_ent {
  struct imap_ent *next;
  size_t index;
  int code;
  char *msg;
  mp_value *v;
} imap_ent;

struct mp_result {
  mp_plat_mutex mu;
  mp_plat_cond cv;
  int kind;
  size_t n, remaining;
  mp_value **out; /* JOB_ONE, JOB_MAP: one slot per input */
  int err;        /* the failure of the lowest failed index */
  size_t err_index;
  char *err_msg;
  imap_ent *qhead, *qtail;                /* JOB_IMAP: finished, not yet given */
  struct raw_answer *raw_head, *raw_tail; /* JOB_MAP: answers the caller decodes */
  size_t raw_items;
  int caller_waiting;
  size_t given, lost; /* lost: finished items that found no memory to queue */
  mp_result_cb cb;
  void *cb_arg;
  int refs; /* the caller's handle, plus the pool's while items remain */
};
typedef struct mp_result job;

/* A map task's answer as received: the waiting caller decodes it, in its own thread (in
 * parallel with the master, and where the outputs will be freed). */
typedef struct raw_answer {
  struct raw_answer *next;
  size_t first, count, len;
  unsigned char data[]; /* the answer's items */
} raw_answer;

struct mp_imap {
  job *j;
};

static job *job_new(int kind, size_t n) {
  job *j = calloc(1, sizeof *j);
  if (j && kind != JOB_IMAP && (j->out = calloc(n, sizeof *j->out)) == NULL) {
    free(j);
    j = NULL;
  }
  if (j == NULL) {
    mp_set_error(MP_ENOMEM, "pool: out of memory for the results of %llu tasks",
                 (unsigned long long)n);
    return NULL;
  }
  mp_plat_mutex_init(&j->mu);
  mp_plat_cond_init(&j->cv);
  j->kind = kind;
  j->n = j->remaining = n;
  j->refs = 2;
  return j;
}

static void job_free(job *j) {
  for (size_t i = 0; j->out && i < j->n; i++)
    mp_value_free(j->out[i]);
  free(j->out);
  free(j->err_msg);
  while (j->raw_head) {
    raw_answer *a = j->raw_head;
    j->raw_head = a->next;
    free(a);
  }
  while (j->qhead) {
    imap_ent *e = j->qhead;
    j->qhead = e->next;
    mp_value_free(e->v);
    free(e->msg);
    free(e);
  }
  mp_plat_cond_destroy(&j->cv);
  mp_plat_mutex_destroy(&j->mu);
  free(j);
}

static void job_unref(job *j) {
  mp_plat_mutex_lock(&j->mu);
  int last = --j->refs == 0;
  mp_plat_mutex_unlock(&j->mu);
  if (last)
    job_free(j);
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  return d ? memcpy(d, s, n) : NULL;
}

/* Runs the callback and drops the pool's reference once the last item is recorded. */
static void job_items_finished(job *j, int finished) {
  if (finished) {
    if (j->cb)
      j->cb(j, j->cb_arg);
    job_unref(j);
  }
}

/* Records item idx's outcome under j->mu (v is taken). */
static void record_locked(job *j, size_t idx, int code, const char *msg, mp_value *v) {
  if (j->kind == JOB_IMAP) {
    imap_ent *e = malloc(sizeof *e);
    if (e == NULL) {
      j->lost++;
      mp_value_free(v);
      return;
    }
    *e = (imap_ent){NULL, idx, code, code ? dup_str(msg) : NULL, v};
    if (j->qtail)
      j->qtail->next = e;
    else
      j->qhead = e;
    j->qtail = e;
  } else if (code == 0) {
    j->out[idx] = v;
  } else {
    mp_value_free(v);
    if (j->err == 0 || idx < j->err_index) {
      j->err = code;
      j->err_index = idx;
      free(j->err_msg);
      j->err_msg = dup_str(msg);
    }
  }
}

/* Records one item; the last one runs the callback. */
static void job_item_done(job *j, size_t idx, int code, const char *msg, mp_value *v) {
  mp_plat_mutex_lock(&j->mu);
  record_locked(j, idx, code, msg, v);
  int finished = --j->remaining == 0;
  if (finished || j->kind == JOB_IMAP)
    mp_plat_cond_broadcast(&j->cv); /* waiters want the end, or (imap) each item */
  mp_plat_mutex_unlock(&j->mu);
  job_items_finished(j, finished);
}

/* Waits until pred holds for j (under j->mu): 0 or MP_ETIMEDOUT. */
static int job_wait_locked(job *j, int (*pred)(job *), int timeout_ms) {
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  while (rc == 0 && !pred(j))
    if (mp_plat_cond_wait(&j->cv, &j->mu, deadline) == MP_ETIMEDOUT && !pred(j))
      rc = mp_set_error(MP_ETIMEDOUT, "pool: the result is not ready after %d ms", timeout_ms);
  return rc;
}

static int job_finished(job *j) { return j->remaining == 0; }
static int imap_has_next(job *j) { return j->qhead != NULL || j->lost > 0 || j->given == j->n; }

/* ---- tasks: one chunk of inputs, encoded once when submitted ---------------------------- */

typedef struct task {
  struct task *next;
  uint64_t id;
  job *j;
  size_t first, count; /* the job's items this task computes */
  uint32_t fnid;
  unsigned flags;
  const mp_value *const *inputs; /* until encoded: the caller's, valid while it waits */
  unsigned char *frame;          /* kept until answered: a dead worker's queue is sent again */
  size_t len;
} task;

static void task_free(task *t) {
  free(t->frame);
  free(t);
}

/* Builds the task's frame from its inputs. */
static int task_encode(task *t) {
  pw_buf b = {0};
  size_t at;
  int rc = pw_frame_begin(&b, &at);
  rc = rc ? rc : pw_put_u8(&b, PW_TASK);
  rc = rc ? rc : pw_put_u32(&b, t->fnid);
  rc = rc ? rc : pw_put_u8(&b, t->flags);
  rc = rc ? rc : pw_put_u32(&b, (uint32_t)t->count);
  for (size_t i = 0; rc == 0 && i < t->count; i++)
    rc = pw_put_value(&b, t->inputs[t->first + i]);
  if (rc < 0) {
    pw_buf_free(&b);
    return rc;
  }
  pw_frame_end(&b, at);
  t->frame = b.data;
  t->len = b.len;
  t->inputs = NULL;
  return 0;
}

/* lazy: the master encodes the task when it sends it (mp_pool_map, whose caller keeps
 * the inputs alive and waits), so encoding runs beside the caller's decoding. */
static int task_new(job *j, size_t first, size_t count, uint32_t fnid, unsigned flags,
                    const mp_value *const *inputs, int lazy, task **out) {
  task *t =
      malloc(sizeof *t); /* not calloc: before 2.41 glibc serves calloc without its thread cache */
  if (t == NULL)
    return mp_set_error(MP_ENOMEM, "pool: out of memory for a task");
  *t = (task){NULL, 0, j, first, count, fnid, flags, inputs, NULL, 0};
  int rc = lazy ? 0 : task_encode(t);
  if (rc < 0) {
    free(t);
    return rc;
  }
  *out = t;
  return 0;
}

/* ---- the pool ---------------------------------------------------------------------------- */

typedef struct fnref {
  void (*fn)(void);
  mp_plat_target t;
} fnref;

typedef struct worker {
  mp_process *proc; /* NULL: the slot is empty */
  mp_conn *conn;
  int64_t pid;
  int eof, stopping, timed_out;
  int topping;       /* assign_locked: may get more work in this pass */
  task *head, *tail; /* sent, unanswered; head is running */
  size_t inflight, inflight_bytes;
  uint64_t assigned, head_start_ns;
  uint32_t fns_known;
  pw_rx rx;
  pw_buf out;
} worker;

enum { P_OPEN, P_CLOSED, P_TERMINATING };

struct mp_pool {
  mp_plat_mutex mu; /* guards what callers touch: the queue, fns, state, pids */
  mp_plat_cond cv;
  int nworkers;
  worker *w;       /* the master thread's alone */
  mp_waitable *ws; /* its wait set: the wake pipe, each worker's connection and process */
  worker **who;
  int64_t *pids;
  mp_start_method method;
  int has_init;
  mp_plat_target init_t;
  mp_value *initargs;
  uint64_t maxtasks;
  int task_timeout_ms;
  fnref *fns;
  size_t nfns;
  task *pend_head, *pend_tail;
  size_t npending;
  task *unsendable; /* tasks whose inputs could not be encoded: failed outside the lock */
  char unsendable_msg[MSG_MAX];
  uint64_t next_id;
  int state, started, start_rc, done, broken;
  char msg[MSG_MAX]; /* start-up failure, or why no worker can be started */
  mp_conn *wake_r, *wake_w;
  int wake_pending;
  mp_thread *thread;
  int thread_joined;
  unsigned serial;
};

static void lock(mp_pool *p) { mp_plat_mutex_lock(&p->mu); }
static void unlock(mp_pool *p) { mp_plat_mutex_unlock(&p->mu); }

/* Wakes the master from mp_wait; one byte in flight at a time is enough. */
static void wake_locked(mp_pool *p) {
  if (!p->wake_pending && mp_conn_send(p->wake_w, "", 0) == 0)
    p->wake_pending = 1;
}

static void drain_wake(mp_pool *p) {
  void *buf;
  size_t len;
  while (mp_conn_recv(p->wake_r, &buf, &len, 0) == 0)
    mp_free(buf);
  lock(p);
  p->wake_pending = 0;
  unlock(p);
}

/* Fails every task of a list with code and msg. */
static void fail_tasks(task *t, int code, const char *msg) {
  while (t) {
    task *next = t->next;
    for (size_t i = 0; i < t->count; i++)
      job_item_done(t->j, t->first + i, code, msg, NULL);
    task_free(t);
    t = next;
  }
}

/* ---- a worker's life -------------------------------------------------------------------- */

static int send_init(mp_pool *p, worker *w) {
  size_t at;
  pw_buf *b = &w->out;
  int rc = pw_frame_begin(b, &at);
  rc = rc ? rc : pw_put_u8(b, PW_INIT);
  rc = rc ? rc : pw_put_u8(b, (unsigned)p->has_init);
  rc = rc || !p->has_init ? rc : pw_put_target(b, &p->init_t);
  rc = rc ? rc : pw_put_u64(b, p->maxtasks);
  rc = rc ? rc : pw_put_value(b, p->initargs);
  if (rc < 0)
    return rc;
  pw_frame_end(b, at);
  mp_plat_buf buf = {b->data, b->len};
  b->len = 0;
  return mp_plat_chan_write(mp__conn_chan(w->conn), &buf, 1);
}

/* Exit status of a dead worker in words: "died with signal 9", "exited with code 3". */
static void describe_exit(worker *w, char *buf, size_t size) {
  int code = 0;
  mp_process_join(w->proc, MP_FOREVER);
  mp_process_exitcode(w->proc, &code);
  if (code < 0)
    snprintf(buf, size, "died with signal %d", -code);
  else
    snprintf(buf, size, "exited with code %d", code);
}

static void drain_wake(mp_pool *p);

/* 1 if mp_pool_terminate was called. */
static int terminating(mp_pool *p) {
  mp_plat_mutex_lock(&p->mu);
  int t = p->state == P_TERMINATING;
  mp_plat_mutex_unlock(&p->mu);
  return t;
}

/* Waits for the worker's hello, which follows its initializer; mp_pool_terminate ends the
 * wait (a slow initializer does not hold it up). */
static int await_hello(mp_pool *p, worker *w) {
  for (;;) {
    pw_reader r;
    int rc = pw_rx_frame(&w->rx, &r);
    if (rc < 0)
      return rc;
    if (rc == 1) {
      unsigned kind = pw_get_u8(&r);
      if (kind == PW_HELLO)
        return 0;
      if (kind == PW_INITFAIL)
        return mp_set_error(MP_ECHILD, "pool worker pid %lld: %.*s", (long long)w->pid, (int)r.left,
                            (const char *)r.p);
      return mp_set_error(MP_EPROTO, "pool worker pid %lld: unexpected frame %u at start-up",
                          (long long)w->pid, kind);
    }
    mp_waitable ws[2] = {mp_waitable_conn(w->conn), mp_waitable_conn(p->wake_r)};
    rc = mp_wait(ws, 2, MP_FOREVER);
    if (rc > 0 && ws[1].ready) {
      drain_wake(p); /* queued work is picked up by the main loop later */
      if (terminating(p))
        return mp_set_error(MP_ECANCELED, "the pool was terminated while a worker started");
    }
    if (rc > 0 && ws[0].ready)
      rc = pw_rx_fill(&w->rx, mp__conn_chan(w->conn), 0);
    if (rc == MP_EEOF) {
      char how[64];
      describe_exit(w, how, sizeof how);
      return mp_set_error(MP_ECHILD, "pool worker pid %lld %s during start-up", (long long)w->pid,
                          how);
    }
    if (rc < 0 && rc != MP_ETIMEDOUT)
      return rc;
  }
}

static void worker_release(worker *w) {
  if (w->proc && mp_process_is_alive(w->proc)) {
    mp_process_kill(w->proc);
    mp_process_join(w->proc, MP_FOREVER);
  }
  mp_process_free(w->proc);
  mp_conn_free(w->conn);
  pw_rx_free(&w->rx);
  pw_buf_free(&w->out);
  memset(w, 0, sizeof *w);
}

static int worker_spawn(mp_pool *p, worker *w) {
  mp_conn *theirs = NULL;
  mp_args *a = NULL;
  char name[48];
  snprintf(name, sizeof name, "PoolWorker-%u", ++p->serial);
  mp_process_opts o;
  memset(&o, 0, sizeof o);
  o.name = name;
  o.daemon = 1; /* mp_shutdown ends the workers of a pool that was never freed */
  o.method = p->method;
  int rc = mp_pipe(&w->conn, &theirs, 1);
  rc = rc ? rc : mp_args_create(&a);
  rc = rc ? rc : mp_args_add_conn(a, theirs);
  rc = rc ? rc : mp_process_create(&w->proc, mp__pool_worker_main, a, &o);
  rc = rc ? rc : mp_process_start(w->proc);
  mp_args_free(a);
  mp_conn_free(theirs);
  if (rc == 0) {
    w->pid = mp_process_pid(w->proc);
    rc = send_init(p, w);
  }
  return rc ? rc : await_hello(p, w);
}

static int worker_start(mp_pool *p, worker *w) {
  int rc = worker_spawn(p, w);
  if (rc < 0) {
    char msg[MSG_MAX];
    snprintf(msg, sizeof msg, "%s", mp_last_error());
    worker_release(w);
    return mp_set_error(rc, "%s", msg);
  }
  lock(p);
  p->pids[w - p->w] = w->pid;
  unlock(p);
  return 0;
}

/* ---- scheduling ------------------------------------------------------------------------ */

/* Encodes the queue's head if needed; a head that cannot be encoded is set aside to fail.
 * Returns 1 if a task with a frame heads the queue. */
static int head_ready_locked(mp_pool *p) {
  while (p->pend_head && p->pend_head->frame == NULL) {
    task *t = p->pend_head;
    if (task_encode(t) == 0)
      break;
    snprintf(p->unsendable_msg, sizeof p->unsendable_msg,
             "pool: the input of task %llu could not be encoded: %s", (unsigned long long)t->id,
             mp_last_error());
    p->pend_head = t->next;
    if (p->pend_head == NULL)
      p->pend_tail = NULL;
    p->npending--;
    t->next = p->unsendable;
    p->unsendable = t;
  }
  return p->pend_head != NULL;
}

/* Fails the tasks set aside by head_ready_locked (their jobs' callbacks may run). */
static void fail_unsendable(mp_pool *p) {
  lock(p);
  task *t = p->unsendable;
  p->unsendable = NULL;
  char msg[MSG_MAX];
  snprintf(msg, sizeof msg, "%s", p->unsendable_msg);
  unlock(p);
  fail_tasks(t, MP_EINVAL, msg);
}

static int can_take(const mp_pool *p, const worker *w, const task *t) {
  if (w->proc == NULL || w->eof || w->stopping || w->inflight >= DEPTH)
    return 0;
  if (w->inflight > 0 && w->inflight_bytes + t->len > DEPTH_BYTES)
    return 0;
  return p->maxtasks == 0 || w->assigned < p->maxtasks;
}

/* Queues the definitions of the functions this worker has not seen yet. */
static int send_defs_locked(mp_pool *p, worker *w, uint32_t upto) {
  while (w->fns_known <= upto) {
    size_t at;
    int rc = pw_frame_begin(&w->out, &at);
    rc = rc ? rc : pw_put_u8(&w->out, PW_DEF);
    rc = rc ? rc : pw_put_u32(&w->out, w->fns_known);
    rc = rc ? rc : pw_put_target(&w->out, &p->fns[w->fns_known].t);
    if (rc < 0)
      return rc;
    pw_frame_end(&w->out, at);
    w->fns_known++;
  }
  return 0;
}

static int give(mp_pool *p, worker *w, task *t) {
  int rc = send_defs_locked(p, w, t->fnid);
  rc = rc ? rc : pw_put(&w->out, t->frame, t->len);
  if (rc < 0)
    return rc;
  p->pend_head = t->next;
  if (p->pend_head == NULL)
    p->pend_tail = NULL;
  p->npending--;
  t->next = NULL;
  if (w->tail)
    w->tail->next = t;
  else {
    w->head = t;
    w->head_start_ns = p->task_timeout_ms ? mp_plat_monotonic_ns() : 0;
  }
  w->tail = t;
  w->inflight++;
  w->inflight_bytes += t->len;
  w->assigned++;
  return 0;
}

/* Deals the queue out one task per worker per round, idle workers first. A busy worker
 * gets more (pipelining) only while more tasks wait than there are workers: the last
 * ones wait here for whichever worker is free first, as in Python's shared queue. */
static void assign_locked(mp_pool *p) {
  for (int i = 0; i < p->nworkers && head_ready_locked(p); i++)
    if (p->w[i].inflight == 0 && can_take(p, &p->w[i], p->pend_head))
      give(p, &p->w[i], p->pend_head);
  /* A busy worker is topped up once half its queue is done: fewer, larger writes. */
  for (int i = 0; i < p->nworkers; i++)
    p->w[i].topping = p->w[i].inflight <= DEPTH / 2;
  int progress = 1;
  while (progress && head_ready_locked(p) && p->npending > (size_t)p->nworkers) {
    progress = 0;
    for (int i = 0; i < p->nworkers && head_ready_locked(p); i++)
      if (p->w[i].topping && can_take(p, &p->w[i], p->pend_head) &&
          give(p, &p->w[i], p->pend_head) == 0)
        progress = 1;
  }
}

static void flush_one(worker *w);

static void flush_all(mp_pool *p) {
  for (int i = 0; i < p->nworkers; i++)
    flush_one(&p->w[i]);
}

/* ---- results and deaths ------------------------------------------------------------------ */

/* Reads one result item: 0 with *v, or the failure's code with msg filled. */
static int read_item(pw_reader *r, mp_value **v, char *msg, size_t size) {
  unsigned status = pw_get_u8(r);
  size_t len = pw_get_u32(r);
  const unsigned char *p = pw_get_bytes(r, len);
  *v = NULL;
  if (r->bad)
    return MP_EPROTO;
  if (status == PW_OK) {
    int rc = pw_decode_value(p, len, v);
    if (rc < 0)
      snprintf(msg, size, "pool: undecodable result: %s", mp_last_error());
    return rc;
  }
  pw_reader m = {p, len, 0};
  int code = (int)pw_get_u32(&m);
  snprintf(msg, size, "%.*s", (int)m.left, (const char *)m.p);
  return code < 0 ? code : MP_ETASK;
}

static task *detach_head(mp_pool *p, worker *w) {
  task *t = w->head;
  w->head = t->next;
  if (w->head == NULL)
    w->tail = NULL;
  w->inflight--;
  w->inflight_bytes -= t->len;
  w->head_start_ns = p->task_timeout_ms ? mp_plat_monotonic_ns() : 0; /* only timeouts read it */
  return t;
}

static void flush_one(worker *w) {
  if (w->proc == NULL || w->out.len == 0)
    return;
  mp_plat_buf b = {w->out.data, w->out.len};
  /* A worker that is gone shows up as its process's exit: handled there. */
  mp_plat_chan_write(mp__conn_chan(w->conn), &b, 1);
  w->out.len = 0;
}

/* Gives a worker that just answered its next work before the answer is decoded, so it
 * computes while the master decodes. */
static void refill(mp_pool *p, worker *w) {
  lock(p);
  if (head_ready_locked(p) && w->inflight == 0 && can_take(p, w, p->pend_head))
    give(p, w, p->pend_head);
  while (head_ready_locked(p) && p->npending > (size_t)p->nworkers &&
         can_take(p, w, p->pend_head) && give(p, w, p->pend_head) == 0)
    ;
  unlock(p);
  flush_one(w);
}

/* Queues a map task's answer for the caller to decode; takes t. */
static int hand_over(job *j, task *t, pw_reader *r) {
  raw_answer *a = malloc(sizeof *a + r->left);
  if (a == NULL) {
    char msg[MSG_MAX];
    snprintf(msg, sizeof msg, "pool: out of memory for the answer of task %llu",
             (unsigned long long)t->id);
    t->next = NULL;
    fail_tasks(t, MP_ENOMEM, msg);
    return 0;
  }
  *a = (raw_answer){NULL, t->first, t->count, r->left};
  memcpy(a->data, r->p, r->left);
  mp_plat_mutex_lock(&j->mu);
  j->raw_items += t->count;
  if (j->raw_tail)
    j->raw_tail->next = a;
  else
    j->raw_head = a;
  j->raw_tail = a;
  j->remaining -= t->count;
  int finished = j->remaining == 0;
  /* Wake-ups cost more than tiny answers: the waiting caller is woken for a batch. */
  if (finished || (j->caller_waiting && j->raw_items >= 256))
    mp_plat_cond_broadcast(&j->cv);
  mp_plat_mutex_unlock(&j->mu);
  job_items_finished(j, finished);
  task_free(t);
  return 0;
}

/* Records a task's answer: the items in one locked step, so a chunk of thousands costs
 * one lock and at most one wake-up of the waiting caller. */
static int on_result(mp_pool *p, worker *w, pw_reader *r) {
  task *t = w->head;
  if (t == NULL || pw_get_u32(r) != t->count)
    return mp_set_error(MP_EPROTO, "pool worker pid %lld sent a result it owed no one",
                        (long long)w->pid);
  pw_reader check = *r; /* the frame is checked whole before anything is recorded */
  for (size_t i = 0; i < t->count && !check.bad; i++) {
    pw_get_u8(&check);
    pw_get_bytes(&check, pw_get_u32(&check));
  }
  if (check.bad)
    return mp_set_error(MP_EPROTO, "pool worker pid %lld sent a malformed result",
                        (long long)w->pid);
  detach_head(p, w);
  if (w->inflight == 0) /* it would idle while we decode; else the main loop refills */
    refill(p, w);
  job *j = t->j;
  if (j->kind == JOB_MAP)
    return hand_over(j, t, r);
  char msg[MSG_MAX];
  mp_plat_mutex_lock(&j->mu);
  for (size_t i = 0; i < t->count; i++) {
    mp_value *v;
    msg[0] = '\0';
    int code = read_item(r, &v, msg, sizeof msg);
    record_locked(j, t->first + i, code, msg, v);
  }
  j->remaining -= t->count;
  int finished = j->remaining == 0;
  if (finished || j->kind == JOB_IMAP)
    mp_plat_cond_broadcast(&j->cv);
  mp_plat_mutex_unlock(&j->mu);
  job_items_finished(j, finished);
  task_free(t);
  return 0;
}

/* Handles every whole frame received; a worker that breaks the protocol is killed. */
static void parse_frames(mp_pool *p, worker *w) {
  for (;;) {
    pw_reader r;
    int rc = pw_rx_frame(&w->rx, &r);
    if (rc == 0)
      return;
    if (rc == 1)
      rc = pw_get_u8(&r) == PW_RESULT ? on_result(p, w, &r)
                                      : mp_set_error(MP_EPROTO, "pool: unexpected frame");
    if (rc < 0) {
      w->eof = 1; /* its process's exit fails what it owed */
      mp_process_kill(w->proc);
      return;
    }
  }
}

static void read_results(mp_pool *p, worker *w) {
  int rc = pw_rx_fill(&w->rx, mp__conn_chan(w->conn), 0);
  if (rc < 0 && rc != MP_ETIMEDOUT)
    w->eof = 1;
  parse_frames(p, w);
}

/* Puts a dead worker's unstarted tasks back at the front of the queue, in order. */
static void requeue(mp_pool *p, task *first, task *last) {
  lock(p);
  last->next = p->pend_head;
  p->pend_head = first;
  for (task *t = first; t != last->next; t = t->next)
    p->npending++;
  if (p->pend_tail == NULL)
    p->pend_tail = last;
  unlock(p);
}

static void fail_pending_broken(mp_pool *p) {
  lock(p);
  task *t = p->pend_head;
  p->pend_head = p->pend_tail = NULL;
  p->npending = 0;
  char msg[MSG_MAX];
  snprintf(msg, sizeof msg, "%s", p->msg);
  unlock(p);
  fail_tasks(t, MP_ECHILD, msg);
}

static int live_workers(const mp_pool *p) {
  int n = 0;
  for (int i = 0; i < p->nworkers; i++)
    n += p->w[i].proc != NULL;
  return n;
}

/* The worker's process ended: collect what it sent, fail the task it was running, queue
 * the rest again and start a replacement. */
static void on_exit_worker(mp_pool *p, worker *w) {
  while (!w->eof) {
    int rc = pw_rx_fill(&w->rx, mp__conn_chan(w->conn), 0);
    parse_frames(p, w);
    if (rc != 0)
      break;
  }
  char how[64], msg[MSG_MAX];
  describe_exit(w, how, sizeof how);
  lock(p);
  p->pids[w - p->w] = 0; /* gone before anyone learns of its death */
  unlock(p);
  if (w->head) {
    task *t = w->head;
    w->head = t->next;
    if (w->timed_out)
      snprintf(msg, sizeof msg, "task %llu ran longer than %d ms; its worker pid %lld was killed",
               (unsigned long long)t->id, p->task_timeout_ms, (long long)w->pid);
    else
      snprintf(msg, sizeof msg, "worker pid %lld %s while running task %llu", (long long)w->pid,
               how, (unsigned long long)t->id);
    t->next = NULL;
    fail_tasks(t, w->timed_out ? MP_ETIMEDOUT : MP_EWORKER, msg);
    if (w->head)
      requeue(p, w->head, w->tail);
    w->head = w->tail = NULL;
  }
  int stopping = w->stopping;
  worker_release(w);
  lock(p);
  int ending = p->state == P_TERMINATING;
  unlock(p);
  if (stopping || ending || worker_start(p, w) == 0 || mp_last_error_code() == MP_ECANCELED)
    return;
  lock(p);
  snprintf(p->msg, sizeof p->msg, "pool: no worker could be started: %s", mp_last_error());
  p->broken = live_workers(p) == 0;
  unlock(p);
}

static void check_timeouts(mp_pool *p) {
  if (p->task_timeout_ms <= 0)
    return;
  uint64_t now = mp_plat_monotonic_ns(), limit = (uint64_t)p->task_timeout_ms * 1000000u;
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->w[i];
    if (w->proc && w->head && !w->timed_out && now - w->head_start_ns >= limit) {
      w->timed_out = 1;
      mp_process_kill(w->proc);
    }
  }
}

/* Milliseconds until the next task would exceed its time limit, or MP_FOREVER. */
static int next_timeout_ms(mp_pool *p) {
  if (p->task_timeout_ms <= 0)
    return MP_FOREVER;
  uint64_t now = mp_plat_monotonic_ns(), limit = (uint64_t)p->task_timeout_ms * 1000000u;
  int64_t best = -1;
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->w[i];
    if (w->proc == NULL || w->head == NULL || w->timed_out)
      continue;
    uint64_t end = w->head_start_ns + limit;
    int64_t ms = end <= now ? 0 : (int64_t)((end - now + 999999) / 1000000);
    if (best < 0 || ms < best)
      best = ms;
  }
  return best < 0 ? MP_FOREVER : (int)best;
}

/* One wait on the wake pipe and every worker's connection and process. */
static void wait_and_handle(mp_pool *p) {
  size_t n = 0;
  mp_waitable *ws = p->ws;
  worker **who = p->who;
  ws[n] = mp_waitable_conn(p->wake_r);
  who[n++] = NULL;
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->w[i];
    if (w->proc == NULL)
      continue;
    if (!w->eof) {
      ws[n] = mp_waitable_conn(w->conn);
      who[n++] = w;
    }
    ws[n] = mp_waitable_process(w->proc);
    who[n++] = w;
  }
  int rc = mp_wait(ws, n, next_timeout_ms(p));
  for (size_t i = 0; rc > 0 && i < n; i++) {
    if (!ws[i].ready)
      continue;
    if (who[i] == NULL)
      drain_wake(p);
    else if (ws[i].kind == MP_WAIT_CONN)
      read_results(p, who[i]);
    else
      on_exit_worker(p, who[i]);
  }
  check_timeouts(p);
}

static int all_idle(const mp_pool *p) {
  for (int i = 0; i < p->nworkers; i++)
    if (p->w[i].proc && p->w[i].inflight > 0)
      return 0;
  return 1;
}

/* After close, once the work is done: asks each worker to exit. */
static void stop_all(mp_pool *p) {
  static const unsigned char stop[5] = {0, 0, 0, 1, PW_STOP};
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->w[i];
    if (w->proc && !w->stopping) {
      w->stopping = 1;
      pw_put(&w->out, stop, sizeof stop);
    }
  }
  flush_all(p);
}

static void run(mp_pool *p) {
  for (;;) {
    lock(p);
    if (p->state == P_TERMINATING) {
      unlock(p);
      return;
    }
    assign_locked(p);
    int draining = p->state == P_CLOSED && p->pend_head == NULL;
    int broken = p->broken && p->pend_head != NULL;
    int unsendable = p->unsendable != NULL;
    unlock(p);
    if (unsendable)
      fail_unsendable(p);
    if (broken)
      fail_pending_broken(p);
    flush_all(p);
    if (draining && all_idle(p)) {
      if (live_workers(p) == 0)
        return;
      stop_all(p);
    }
    wait_and_handle(p);
  }
}

static void pool_thread(void *arg) {
  mp_pool *p = arg;
  int rc = 0;
  for (int i = 0; i < p->nworkers && rc == 0; i++)
    rc = worker_start(p, &p->w[i]);
  lock(p);
  p->start_rc = rc;
  if (rc < 0)
    snprintf(p->msg, sizeof p->msg, "%s", mp_last_error());
  p->started = 1;
  mp_plat_cond_broadcast(&p->cv);
  unlock(p);
  if (rc == 0)
    run(p);
  for (int i = 0; i < p->nworkers; i++) {
    worker *w = &p->w[i];
    task *t = w->head;
    w->head = NULL;
    worker_release(w);
    fail_tasks(t, MP_ECANCELED, "the pool was terminated");
  }
  fail_unsendable(p);
  lock(p);
  task *t = p->pend_head;
  p->pend_head = p->pend_tail = NULL;
  p->npending = 0;
  memset(p->pids, 0, (size_t)p->nworkers * sizeof *p->pids);
  unlock(p);
  fail_tasks(t, MP_ECANCELED, "the pool was terminated");
  lock(p);
  p->done = 1;
  mp_plat_cond_broadcast(&p->cv);
  unlock(p);
}

/* ---- creating and ending a pool ------------------------------------------------------- */

static int check_opts(const mp_pool_opts *o) {
  if (o->maxtasksperchild < 0)
    return mp_set_error(MP_EINVAL, "mp_pool_create: maxtasksperchild is %d", o->maxtasksperchild);
  if (o->task_timeout_ms < 0)
    return mp_set_error(MP_EINVAL, "mp_pool_create: task_timeout_ms is %d", o->task_timeout_ms);
  return mp__start_method_check(o->method, "mp_pool_create");
}

/* mp_values have no copy function: a round trip through MessagePack is one. */
static int copy_value(const mp_value *v, mp_value **out) {
  void *buf = NULL;
  size_t len = 0;
  *out = NULL;
  if (v == NULL)
    return 0;
  int rc = mp_value_encode(v, &buf, &len);
  if (rc == 0)
    rc = mp_value_decode(buf, len, out);
  mp_free(buf);
  return rc;
}

static void pool_destroy(mp_pool *p) {
  if (p->thread) {
    if (!p->thread_joined)
      mp_thread_join(p->thread, MP_FOREVER);
    mp_thread_free(p->thread);
  }
  mp_conn_free(p->wake_r);
  mp_conn_free(p->wake_w);
  mp_value_free(p->initargs);
  free(p->fns);
  free(p->w);
  free(p->pids);
  free(p->ws);
  free(p->who);
  mp_plat_cond_destroy(&p->cv);
  mp_plat_mutex_destroy(&p->mu);
  free(p);
}

static int pool_setup(mp_pool *p, int nworkers, const mp_pool_opts *o) {
  p->nworkers = nworkers;
  p->method = o->method;
  p->maxtasks = (uint64_t)o->maxtasksperchild;
  p->task_timeout_ms = o->task_timeout_ms;
  p->w = calloc((size_t)nworkers, sizeof *p->w);
  p->pids = calloc((size_t)nworkers, sizeof *p->pids);
  p->ws = calloc(1 + 2 * (size_t)nworkers, sizeof *p->ws);
  p->who = calloc(1 + 2 * (size_t)nworkers, sizeof *p->who);
  if (p->w == NULL || p->pids == NULL || p->ws == NULL || p->who == NULL)
    return mp_set_error(MP_ENOMEM, "mp_pool_create: out of memory for %d workers", nworkers);
  int rc = copy_value(o->initargs, &p->initargs);
  if (rc == 0 && o->initializer) {
    p->has_init = 1;
    rc = mp_plat_target_ref((void (*)(void))o->initializer, &p->init_t);
  }
  return rc ? rc : mp_pipe(&p->wake_r, &p->wake_w, 0);
}

int mp_pool_create(mp_pool **pool, int nworkers, const mp_pool_opts *opts) {
  mp_pool_opts none;
  memset(&none, 0, sizeof none);
  const mp_pool_opts *o = opts ? opts : &none;
  if (pool == NULL)
    return mp_set_error(MP_EINVAL, "mp_pool_create: pool is NULL");
  *pool = NULL;
  if (nworkers < 0)
    return mp_set_error(MP_EINVAL, "mp_pool_create: nworkers is %d", nworkers);
  int rc = check_opts(o);
  if (rc < 0)
    return rc;
  mp_pool *p = calloc(1, sizeof *p);
  if (p == NULL)
    return mp_set_error(MP_ENOMEM, "mp_pool_create: out of memory");
  mp_plat_mutex_init(&p->mu);
  mp_plat_cond_init(&p->cv);
  rc = pool_setup(p, nworkers ? nworkers : mp_cpu_count(), o);
  rc = rc ? rc : mp_thread_create(&p->thread, pool_thread, p, "PoolMaster");
  if (rc == 0) {
    lock(p);
    while (!p->started)
      mp_plat_cond_wait(&p->cv, &p->mu, -1);
    rc = p->start_rc;
    unlock(p);
    if (rc < 0)
      mp_set_error(rc, "mp_pool_create: %s", p->msg);
  }
  if (rc < 0) {
    char msg[MSG_MAX];
    snprintf(msg, sizeof msg, "%s", mp_last_error());
    pool_destroy(p);
    return mp_set_error(rc, "%s", msg);
  }
  *pool = p;
  return 0;
}

int mp_pool_close(mp_pool *p) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_pool_close: pool is NULL");
  lock(p);
  if (p->state == P_OPEN) {
    p->state = P_CLOSED;
    wake_locked(p);
  }
  unlock(p);
  return 0;
}

static void join_thread(mp_pool *p) {
  lock(p);
  int join = !p->thread_joined;
  p->thread_joined = 1;
  unlock(p);
  if (join)
    mp_thread_join(p->thread, MP_FOREVER);
}

int mp_pool_join(mp_pool *p, int timeout_ms) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_pool_join: pool is NULL");
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc < 0)
    return rc;
  lock(p);
  if (p->state == P_OPEN)
    rc = mp_set_error(MP_ESTATE, "mp_pool_join: close or terminate the pool first");
  while (rc == 0 && !p->done)
    if (mp_plat_cond_wait(&p->cv, &p->mu, deadline) == MP_ETIMEDOUT && !p->done)
      rc = mp_set_error(MP_ETIMEDOUT, "mp_pool_join: work still runs after %d ms", timeout_ms);
  unlock(p);
  if (rc == 0)
    join_thread(p);
  return rc;
}

int mp_pool_terminate(mp_pool *p) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_pool_terminate: pool is NULL");
  lock(p);
  if (!p->done) {
    p->state = P_TERMINATING;
    wake_locked(p);
  }
  while (!p->done)
    mp_plat_cond_wait(&p->cv, &p->mu, -1);
  unlock(p);
  join_thread(p);
  return 0;
}

int mp_pool_size(const mp_pool *p) {
  return p ? p->nworkers : mp_set_error(MP_EINVAL, "mp_pool_size: pool is NULL");
}

int mp_pool_pids(mp_pool *p, int64_t *pids, size_t max, size_t *n) {
  if (p == NULL || n == NULL || (pids == NULL && max > 0))
    return mp_set_error(MP_EINVAL, "mp_pool_pids: NULL argument");
  size_t k = 0;
  lock(p);
  for (int i = 0; i < p->nworkers && k < max; i++)
    if (p->pids[i])
      pids[k++] = p->pids[i];
  unlock(p);
  *n = k;
  return 0;
}

void mp_pool_free(mp_pool *p) {
  if (p == NULL)
    return;
  mp_pool_terminate(p);
  pool_destroy(p);
}

/* ---- submitting work ---------------------------------------------------------------------- */

/* The function's index in the pool's table, describing it for workers the first time. */
static int fn_id(mp_pool *p, void (*fn)(void), uint32_t *id) {
  lock(p);
  for (size_t i = 0; i < p->nfns; i++)
    if (p->fns[i].fn == fn) {
      *id = (uint32_t)i;
      unlock(p);
      return 0;
    }
  unlock(p);
  mp_plat_target t;
  int rc = mp_plat_target_ref(fn, &t);
  if (rc < 0)
    return rc;
  lock(p);
  size_t i = 0;
  while (i < p->nfns && p->fns[i].fn != fn)
    i++;
  if (i == p->nfns) {
    fnref *f = realloc(p->fns, (p->nfns + 1) * sizeof *f);
    if (f == NULL)
      rc = mp_set_error(MP_ENOMEM, "pool: out of memory for a function reference");
    else {
      p->fns = f;
      p->fns[p->nfns++] = (fnref){fn, t};
    }
  }
  *id = (uint32_t)i;
  unlock(p);
  return rc;
}

/* Appends a list of tasks to the queue, unless the pool no longer takes work. */
static int submit(mp_pool *p, task *head, task *tail, const char *who) {
  lock(p);
  if (p->state != P_OPEN) {
    int closed = p->state == P_CLOSED;
    unlock(p);
    return mp_set_error(MP_ESTATE, "%s: the pool was %s", who, closed ? "closed" : "terminated");
  }
  for (task *t = head; t; t = t->next) {
    t->id = p->next_id++;
    p->npending++;
  }
  if (p->pend_tail)
    p->pend_tail->next = head;
  else
    p->pend_head = head;
  p->pend_tail = tail;
  wake_locked(p);
  unlock(p);
  return 0;
}

static void free_list(task *t) {
  while (t) {
    task *next = t->next;
    task_free(t);
    t = next;
  }
}

int mp_pool_apply_async_cb(mp_pool *p, mp_task_fn fn, const mp_value *input, mp_result_cb cb,
                           void *arg, mp_result **result) {
  if (result)
    *result = NULL;
  if (p == NULL || fn == NULL || result == NULL)
    return mp_set_error(MP_EINVAL, "mp_pool_apply_async: pool, fn or result is NULL");
  uint32_t fnid;
  int rc = fn_id(p, (void (*)(void))fn, &fnid);
  if (rc < 0)
    return rc;
  job *j = job_new(JOB_ONE, 1);
  if (j == NULL)
    return MP_ENOMEM;
  j->cb = cb;
  j->cb_arg = arg;
  task *t = NULL;
  rc = task_new(j, 0, 1, fnid, 0, &input, 0, &t);
  rc = rc ? rc : submit(p, t, t, "mp_pool_apply_async");
  if (rc < 0) {
    free_list(t);
    job_free(j);
    return rc;
  }
  *result = j;
  return 0;
}

int mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const mp_value *input, mp_result **result) {
  return mp_pool_apply_async_cb(p, fn, input, NULL, NULL, result);
}

int mp_pool_apply(mp_pool *p, mp_task_fn fn, const mp_value *input, mp_value **output) {
  if (output)
    *output = NULL;
  mp_result *r;
  int rc = mp_pool_apply_async(p, fn, input, &r);
  if (rc < 0)
    return rc;
  mp_value *v = NULL;
  rc = mp_result_get(r, &v, MP_FOREVER);
  if (rc == 0 && output) {
    *output = v;
    r->out[0] = NULL; /* handed over */
  }
  mp_result_free(r);
  return rc;
}

/* Queues fn over inputs in chunks; the returned job collects the results. */
static int map_submit(mp_pool *p, void (*fn)(void), unsigned flags, const mp_value *const *inputs,
                      size_t n, size_t chunksize, int kind, const char *who, job **out) {
  if (p == NULL || fn == NULL || (inputs == NULL && n > 0))
    return mp_set_error(MP_EINVAL, "%s: pool, fn or inputs is NULL", who);
  for (size_t i = 0; (flags & PW_STAR) && i < n; i++) {
    int type = mp_value_type_of(inputs[i]);
    if (type != MP_VALUE_TUPLE && type != MP_VALUE_LIST)
      return mp_set_error(MP_EINVAL, "%s: input %llu is not a tuple or list", who,
                          (unsigned long long)i);
  }
  if (chunksize == 0) {
    size_t per = 4 * (size_t)p->nworkers;
    chunksize = n / per + (n % per != 0);
    chunksize = chunksize ? chunksize : 1;
  }
  uint32_t fnid;
  int rc = fn_id(p, fn, &fnid);
  job *j = rc < 0 ? NULL : job_new(kind, n);
  if (j == NULL)
    return rc < 0 ? rc : MP_ENOMEM;
  /* Batches go out as they are encoded, so the workers start while the rest is encoded. */
  task *head = NULL, *tail = NULL;
  size_t batch = 0, i = 0;
  for (; rc == 0 && i < n; i += chunksize) {
    task *t = NULL;
    rc = task_new(j, i, n - i < chunksize ? n - i : chunksize, fnid, flags, inputs, kind == JOB_MAP,
                  &t);
    if (rc < 0)
      break;
    if (tail)
      tail->next = t;
    else
      head = t;
    tail = t;
    batch += t->count;
    if (batch >= 512 || i + chunksize >= n) {
      rc = submit(p, head, tail, who);
      if (rc == 0)
        head = tail = NULL;
      batch = 0;
    }
  }
  if (rc < 0) {
    /* What was queued finishes in the pool; the rest fails here so the job completes. */
    char msg[MSG_MAX];
    snprintf(msg, sizeof msg, "%s", mp_last_error());
    fail_tasks(head, rc, msg);
    for (size_t k = i; k < n; k++) /* never queued */
      job_item_done(j, k, rc, msg, NULL);
    if (kind == JOB_MAP) { /* queued tasks may still read the caller's inputs */
      mp_plat_mutex_lock(&j->mu);
      job_wait_locked(j, job_finished, MP_FOREVER);
      mp_plat_mutex_unlock(&j->mu);
    }
    job_unref(j);
    return mp_set_error(rc, "%s", msg);
  }
  if (n == 0)
    j->refs = 1; /* nothing for the pool to finish */
  *out = j;
  return 0;
}

/* Decodes answers (outside the lock) into the job's outputs. */
static void decode_answers(job *j, raw_answer *a) {
  char msg[MSG_MAX];
  while (a) {
    raw_answer *next = a->next;
    pw_reader r = {a->data, a->len, 0};
    for (size_t i = 0; i < a->count; i++) {
      mp_value *v;
      msg[0] = '\0';
      int code = read_item(&r, &v, msg, sizeof msg);
      if (code == 0) {
        j->out[a->first + i] = v; /* only this thread writes outputs of answered items */
        continue;
      }
      mp_plat_mutex_lock(&j->mu);
      record_locked(j, a->first + i, code, msg, v);
      mp_plat_mutex_unlock(&j->mu);
    }
    free(a);
    a = next;
  }
}

/* Waits for a map, decoding answers as they come, then moves its outputs out or fails with
 * the lowest failed index. */
static int map_collect(job *j, size_t n, mp_value **outputs) {
  mp_plat_mutex_lock(&j->mu);
  for (;;) {
    raw_answer *a = j->raw_head;
    j->raw_head = j->raw_tail = NULL;
    j->raw_items = 0;
    if (a) {
      mp_plat_mutex_unlock(&j->mu);
      decode_answers(j, a);
      mp_plat_mutex_lock(&j->mu);
      continue;
    }
    if (j->remaining == 0)
      break;
    j->caller_waiting = 1;
    mp_plat_cond_wait(&j->cv, &j->mu, -1);
    j->caller_waiting = 0;
  }
  mp_plat_mutex_unlock(&j->mu);
  int rc = j->err;
  if (rc < 0)
    mp_set_error(rc, "input %llu: %s", (unsigned long long)j->err_index,
                 j->err_msg ? j->err_msg : mp_strerror(rc));
  for (size_t i = 0; i < n; i++) {
    outputs[i] = rc < 0 ? NULL : j->out[i];
    if (rc == 0)
      j->out[i] = NULL;
  }
  job_unref(j);
  return rc;
}

int mp_pool_map(mp_pool *p, mp_task_fn fn, const mp_value *const *inputs, size_t n,
                size_t chunksize, mp_value **outputs) {
  if (outputs == NULL && n > 0)
    return mp_set_error(MP_EINVAL, "mp_pool_map: outputs is NULL");
  job *j = NULL;
  int rc = map_submit(p, (void (*)(void))fn, 0, inputs, n, chunksize, JOB_MAP, "mp_pool_map", &j);
  return rc < 0 ? rc : map_collect(j, n, outputs);
}

int mp_pool_starmap(mp_pool *p, mp_star_fn fn, const mp_value *const *inputs, size_t n,
                    size_t chunksize, mp_value **outputs) {
  if (outputs == NULL && n > 0)
    return mp_set_error(MP_EINVAL, "mp_pool_starmap: outputs is NULL");
  job *j = NULL;
  int rc = map_submit(p, (void (*)(void))fn, PW_STAR, inputs, n, chunksize, JOB_MAP,
                      "mp_pool_starmap", &j);
  return rc < 0 ? rc : map_collect(j, n, outputs);
}

int mp_pool_imap_unordered(mp_pool *p, mp_task_fn fn, const mp_value *const *inputs, size_t n,
                           size_t chunksize, mp_imap **it) {
  if (it == NULL)
    return mp_set_error(MP_EINVAL, "mp_pool_imap_unordered: it is NULL");
  *it = calloc(1, sizeof **it);
  if (*it == NULL)
    return mp_set_error(MP_ENOMEM, "mp_pool_imap_unordered: out of memory");
  int rc = map_submit(p, (void (*)(void))fn, 0, inputs, n, chunksize, JOB_IMAP,
                      "mp_pool_imap_unordered", &(*it)->j);
  if (rc < 0) {
    free(*it);
    *it = NULL;
  }
  return rc;
}

/* ---- results ---------------------------------------------------------------------------- */

int mp_result_wait(mp_result *r, int timeout_ms) {
  if (r == NULL)
    return mp_set_error(MP_EINVAL, "mp_result_wait: result is NULL");
  mp_plat_mutex_lock(&r->mu);
  int rc = job_wait_locked(r, job_finished, timeout_ms);
  mp_plat_mutex_unlock(&r->mu);
  return rc;
}

int mp_result_get(mp_result *r, mp_value **value, int timeout_ms) {
  if (value)
    *value = NULL;
  int rc = mp_result_wait(r, timeout_ms);
  if (rc < 0)
    return rc;
  if (r->err < 0)
    return mp_set_error(r->err, "%s", r->err_msg ? r->err_msg : mp_strerror(r->err));
  if (value)
    *value = r->out[0];
  return 0;
}

int mp_result_ready(mp_result *r) {
  if (r == NULL)
    return mp_set_error(MP_EINVAL, "mp_result_ready: result is NULL");
  mp_plat_mutex_lock(&r->mu);
  int ready = r->remaining == 0;
  mp_plat_mutex_unlock(&r->mu);
  return ready;
}

int mp_result_successful(mp_result *r) {
  int ready = mp_result_ready(r);
  if (ready <= 0)
    return ready < 0 ? ready : mp_set_error(MP_ESTATE, "mp_result_successful: not ready yet");
  return r->err == 0;
}

void mp_result_free(mp_result *r) {
  if (r)
    job_unref(r);
}

int mp_imap_next(mp_imap *it, size_t *index, mp_value **value, int timeout_ms) {
  if (value)
    *value = NULL;
  if (it == NULL)
    return mp_set_error(MP_EINVAL, "mp_imap_next: iterator is NULL");
  job *j = it->j;
  mp_plat_mutex_lock(&j->mu);
  int rc = job_wait_locked(j, imap_has_next, timeout_ms);
  imap_ent *e = NULL;
  if (rc == 0 && j->qhead) {
    e = j->qhead;
    j->qhead = e->next;
    if (j->qhead == NULL)
      j->qtail = NULL;
    j->given++;
  } else if (rc == 0 && j->lost > 0) {
    j->lost--;
    j->given++;
    rc = mp_set_error(MP_ENOMEM, "mp_imap_next: a result was lost for lack of memory");
  } else if (rc == 0) {
    rc = mp_set_error(MP_EEOF, "mp_imap_next: all %llu results were given",
                      (unsigned long long)j->n);
  }
  mp_plat_mutex_unlock(&j->mu);
  if (e == NULL)
    return rc;
  if (index)
    *index = e->index;
  rc = e->code;
  if (rc < 0)
    mp_set_error(rc, "%s", e->msg ? e->msg : mp_strerror(rc));
  if (value && rc == 0)
    *value = e->v;
  else
    mp_value_free(e->v);
  free(e->msg);
  free(e);
  return rc;
}

void mp_imap_free(mp_imap *it) {
  if (it == NULL)
    return;
  job_unref(it->j);
  free(it);
}
