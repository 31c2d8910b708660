/* The pool's master: one thread per pool owns the workers. It talks to each over its own
 * connection, hands out tasks itself (no lock is shared with the workers, so none can die
 * holding it), and waits with mp_wait on every worker's connection and process at once.
 * Several tasks are queued on each worker (pipelining) to keep it busy; since a worker
 * answers in order, the oldest unanswered task of a dead worker is the one it was running:
 * that one fails with MP_EWORKER and the ones queued behind it go to others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"
#include "pool.h"
#include "pool_wire.h"
#include "proc.h"
#include "value.h"

/* ---- a worker's life -------------------------------------------------------------------- */

/* Sends what is queued for w in one write. A worker that is gone shows up as its process's
 * exit, which is handled there. */
static void flush_one(mp__worker *w) {
  if (w->proc && (w->out.len > 0))
    mp__conn_send_batch(w->conn, &w->out);
}

static void flush_all(mp_pool *p) {
  for (int i = 0; i < p->nworkers; i++)
    flush_one(&p->w[i]);
}

static int send_init(mp_pool *p, mp__worker *w) {
  size_t at;
  mp__buf *b = &w->out;
  int rc = mp__conn_msg_begin(b, &at);
  rc = rc ? rc : mp__buf_put_u8(b, MP__PW_INIT);
  rc = rc ? rc : mp__buf_put_u8(b, p->init_ref.len > 0);
  rc = rc ? rc : mp__buf_put(b, p->init_ref.data, p->init_ref.len);
  rc = rc ? rc : mp__buf_put_u64(b, p->maxtasks);
  rc = rc ? rc : mp__value_encode_append(p->initargs, b);
  rc = rc ? rc : mp__conn_msg_end(b, at);
  return rc ? rc : mp__conn_send_batch(w->conn, b);
}

/* Exit status of a dead worker in words: "died with signal 9", "exited with code 3". */
static void describe_exit(mp__worker *w, char *buf, size_t size) {
  int code = 0;
  mp_process_join(w->proc, MP_FOREVER);
  mp_process_exitcode(w->proc, &code);
  if (code < 0)
    snprintf(buf, size, "died with signal %d", -code);
  else
    snprintf(buf, size, "exited with code %d", code);
}

void mp__pool_drain_wake(mp_pool *p) {
  void *buf;
  size_t len;
  while (mp_conn_recv(p->wake_r, &buf, &len, 0) == 0)
    mp_free(buf);
  mp__pool_lock(p);
  p->wake_pending = 0;
  mp__pool_unlock(p);
}

/* 1 if mp_pool_terminate was called. */
static int terminating(mp_pool *p) {
  mp__pool_lock(p);
  int t = p->state == MP__POOL_TERMINATING;
  mp__pool_unlock(p);
  return t;
}

/* The worker's first message: its hello, or why its initializer failed. */
static int read_hello(mp__worker *w) {
  const unsigned char *msg = NULL;
  size_t len = 0;
  int rc = mp__conn_recv_borrow(w->conn, &msg, &len, 0);
  if (rc < 0)
    return rc;
  unsigned kind = len > 0 ? msg[0] : 0;
  if (kind == MP__PW_HELLO)
    return 0;
  if (kind == MP__PW_INITFAIL)
    return mp_set_error(MP_ECHILD, "pool worker pid %lld: %.*s", (long long)w->pid, (int)(len - 1),
                        (const char *)msg + 1);
  return mp_set_error(MP_EPROTO, "pool worker pid %lld: unexpected message %u at start-up",
                      (long long)w->pid, kind);
}

/* Waits for the worker's hello, which follows its initializer; mp_pool_terminate ends the
 * wait (a slow initializer does not hold it up). */
static int await_hello(mp_pool *p, mp__worker *w) {
  for (;;) {
    mp_waitable ws[2] = {mp_waitable_conn(w->conn), mp_waitable_conn(p->wake_r)};
    int rc = mp_wait(ws, 2, MP_FOREVER);
    if (rc > 0 && ws[1].ready) {
      mp__pool_drain_wake(p); /* queued work is picked up by the main loop later */
      if (terminating(p))
        return mp_set_error(MP_ECANCELED, "the pool was terminated while a worker started");
    }
    if (rc > 0 && ws[0].ready)
      rc = read_hello(w);
    if (rc == MP_EEOF || rc == MP_EBROKEN) {
      char how[64];
      describe_exit(w, how, sizeof how);
      return mp_set_error(MP_ECHILD, "pool worker pid %lld %s during start-up", (long long)w->pid,
                          how);
    }
    if (rc == 0)
      return 0;
    if (rc < 0 && rc != MP_ETIMEDOUT)
      return rc;
  }
}

static void worker_release(mp__worker *w) {
  if (w->proc && mp_process_is_alive(w->proc)) {
    mp_process_kill(w->proc);
    mp_process_join(w->proc, MP_FOREVER);
  }
  mp_process_free(w->proc);
  mp_conn_free(w->conn);
  mp__buf_free(&w->out);
  memset(w, 0, sizeof *w);
}

static int worker_spawn(mp_pool *p, mp__worker *w) {
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
  rc = rc ? rc : mp__conn_set_readahead(w->conn);
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

static int worker_start(mp_pool *p, mp__worker *w) {
  int rc = worker_spawn(p, w);
  if (rc < 0) {
    char msg[MP__POOL_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", mp_last_error());
    worker_release(w);
    return mp_set_error(rc, "%s", msg);
  }
  mp__pool_lock(p);
  p->pids[w - p->w] = w->pid;
  mp__pool_unlock(p);
  return 0;
}

/* ---- scheduling (under the pool's lock) ----------------------------------------------------- */

/* Sets a task aside to fail outside the lock, saying why. */
static void set_aside_locked(mp_pool *p, mp__task *t, const char *what, const char *why) {
  snprintf(p->unsendable_msg, sizeof p->unsendable_msg, "pool: %stask %llu %s: %s", what,
           (unsigned long long)t->id, why, mp_last_error());
  t->next = p->unsendable;
  p->unsendable = t;
}

static void pop_head_locked(mp_pool *p) {
  p->pend_head = p->pend_head->next;
  if (p->pend_head == NULL)
    p->pend_tail = NULL;
  p->npending--;
}

/* Encodes the queue's head if needed; a head that cannot be encoded is set aside to fail.
 * Returns 1 if a task with a body heads the queue. */
static int head_ready_locked(mp_pool *p) {
  while (p->pend_head && p->pend_head->body == NULL) {
    mp__task *t = p->pend_head;
    if (mp__task_encode(t, &p->scratch) == 0)
      break;
    pop_head_locked(p);
    set_aside_locked(p, t, "the input of ", "could not be encoded");
  }
  return p->pend_head != NULL;
}

/* Fails the tasks set aside (their jobs' callbacks may run). */
static void fail_unsendable(mp_pool *p) {
  mp__pool_lock(p);
  mp__task *t = p->unsendable;
  p->unsendable = NULL;
  char msg[MP__POOL_MSG_MAX];
  snprintf(msg, sizeof msg, "%s", p->unsendable_msg);
  mp__pool_unlock(p);
  mp__fail_tasks(t, MP_EINVAL, msg);
}

static int can_take(const mp_pool *p, const mp__worker *w, const mp__task *t) {
  if (w->proc == NULL || w->eof || w->stopping || w->gone || w->inflight >= MP__POOL_DEPTH)
    return 0;
  if (w->inflight > 0 && (w->inflight_bytes + t->len > MP__POOL_DEPTH_BYTES ||
                          w->inflight_handles + t->nhandles > MP_PLAT_MAX_PASS))
    return 0;
  return p->maxtasks == 0 || w->assigned < p->maxtasks;
}

/* Queues the definitions of the functions this worker has not seen yet (each one whole). */
static int send_defs_locked(mp_pool *p, mp__worker *w, uint32_t upto) {
  while (w->fns_known <= upto) {
    size_t at = w->out.len;
    const mp__buf *ref = &p->fns[w->fns_known].ref;
    int rc = mp__conn_msg_begin(&w->out, &at);
    rc = rc ? rc : mp__buf_put_u8(&w->out, MP__PW_DEF);
    rc = rc ? rc : mp__buf_put_u32(&w->out, w->fns_known);
    rc = rc ? rc : mp__buf_put(&w->out, ref->data, ref->len);
    rc = rc ? rc : mp__conn_msg_end(&w->out, at);
    if (rc < 0) {
      w->out.len = at;
      return rc;
    }
    w->fns_known++;
  }
  return 0;
}

/* An argument task's message. Its handles go to this worker last (Windows: into its
 * process; POSIX: along the next write), once nothing else can fail, and the names they go
 * by are written into the room left for them. */
static int put_args_task(mp__worker *w, const mp__task *t) {
  uint64_t theirs[MP_PLAT_MAX_PASS];
  size_t at, names;
  int rc = mp__conn_msg_begin(&w->out, &at);
  rc = rc ? rc : mp__buf_put_u8(&w->out, MP__PW_ARGS_TASK);
  rc = rc ? rc : mp__buf_put_u32(&w->out, t->fnid);
  rc = rc ? rc : mp__buf_put_u8(&w->out, (unsigned)t->nhandles);
  names = w->out.len;
  for (size_t i = 0; rc == 0 && i < t->nhandles; i++)
    rc = mp__buf_put_u64(&w->out, 0);
  rc = rc ? rc : mp__buf_put(&w->out, t->body, t->len);
  rc = rc ? rc : mp__conn_msg_end(&w->out, at);
  rc = rc ? rc
          : mp__conn_give_handles(w->conn, mp__process_wait_handle(w->proc), t->handles,
                                  t->nhandles, theirs);
  for (size_t i = 0; rc == 0 && i < t->nhandles; i++)
    mp__buf_be(w->out.data + names + 8 * i, theirs[i], 8);
  return rc;
}

static int put_task(mp__worker *w, const mp__task *t) {
  size_t at;
  int rc = mp__conn_msg_begin(&w->out, &at);
  rc = rc ? rc : mp__buf_put(&w->out, t->body, t->len);
  return rc ? rc : mp__conn_msg_end(&w->out, at);
}

/* Moves the queue's head to w: 0, or an error with nothing given. A worker that died
 * since the master last waited (its exit not seen yet) refuses the handles of an argument
 * task (MP_EBROKEN): the task stays at the head for another worker, and the worker takes
 * no more work until its exit is handled like any other death. */
static int give_locked(mp_pool *p, mp__worker *w) {
  mp__task *t = p->pend_head;
  int rc = send_defs_locked(p, w, t->fnid);
  size_t undo = w->out.len; /* the definitions stay: the worker learns them either way */
  if (rc == 0)
    rc = t->flags & MP__PW_ARGS ? put_args_task(w, t) : put_task(w, t);
  if (rc == MP_EBROKEN) {
    w->out.len = undo;
    w->gone = 1;
    mp_process_kill(w->proc); /* an exit that is surely coming, whatever the refusal meant */
    return rc;
  }
  if (rc < 0) {
    w->out.len = undo;
    pop_head_locked(p);
    set_aside_locked(p, t, "", "could not be given to a worker");
    return rc;
  }
  pop_head_locked(p);
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
  w->inflight_handles += t->nhandles;
  w->assigned++;
  return 0;
}

/* Deals the queue out one task per worker per round, idle workers first. A busy worker
 * gets more (pipelining) only while more tasks wait than there are workers: the last
 * ones wait here for whichever worker is free first, as in Python's shared queue. */
static void assign_locked(mp_pool *p) {
  for (int i = 0; i < p->nworkers && head_ready_locked(p); i++)
    if (p->w[i].inflight == 0 && can_take(p, &p->w[i], p->pend_head))
      give_locked(p, &p->w[i]);
  /* A busy worker is topped up once half its queue is done: fewer, larger writes. */
  for (int i = 0; i < p->nworkers; i++)
    p->w[i].topping = p->w[i].inflight <= MP__POOL_DEPTH / 2;
  int progress = 1;
  while (progress && head_ready_locked(p) && p->npending > (size_t)p->nworkers) {
    progress = 0;
    for (int i = 0; i < p->nworkers && head_ready_locked(p); i++)
      if (p->w[i].topping && can_take(p, &p->w[i], p->pend_head) && give_locked(p, &p->w[i]) == 0)
        progress = 1;
  }
}

/* Gives a worker that just answered its next work before the answer is recorded, so it
 * computes while the master records. */
static void refill(mp_pool *p, mp__worker *w) {
  mp__pool_lock(p);
  if (head_ready_locked(p) && w->inflight == 0 && can_take(p, w, p->pend_head))
    give_locked(p, w);
  while (head_ready_locked(p) && p->npending > (size_t)p->nworkers &&
         can_take(p, w, p->pend_head) && give_locked(p, w) == 0)
    ;
  mp__pool_unlock(p);
  flush_one(w);
}

/* ---- answers and deaths ------------------------------------------------------------------ */

static mp__task *detach_head(mp_pool *p, mp__worker *w) {
  mp__task *t = w->head;
  w->head = t->next;
  if (w->head == NULL)
    w->tail = NULL;
  w->inflight--;
  w->inflight_bytes -= t->len;
  w->inflight_handles -= t->nhandles;
  w->head_start_ns = p->task_timeout_ms ? mp_plat_monotonic_ns() : 0; /* only timeouts read it */
  return t;
}

/* Records a task's answer: the items in one locked step, so a chunk of thousands costs
 * one lock and at most one wake-up of the waiting caller. */
static int on_result(mp_pool *p, mp__worker *w, mp__reader *r) {
  mp__task *t = w->head;
  if (t == NULL || mp__get_u32(r) != t->count || r->bad)
    return mp_set_error(MP_EPROTO, "pool worker pid %lld sent a result it owed no one",
                        (long long)w->pid);
  if (mp__pw_check_results(*r, t->count) < 0) /* whole, before anything is recorded */
    return mp_set_error(MP_EPROTO, "pool worker pid %lld sent a malformed result",
                        (long long)w->pid);
  detach_head(p, w);
  if (w->inflight == 0) /* it would idle while we record; else the main loop refills */
    refill(p, w);
  mp__job *j = t->j;
  size_t first = t->first, count = t->count;
  mp__task_free(t); /* before the record that may end the job */
  mp__job_answer(j, first, count, r);
  return 0;
}

/* Handles one message of w; a worker that breaks the protocol is killed. */
static void on_message(mp_pool *p, mp__worker *w, const unsigned char *msg, size_t len) {
  mp__reader r = {msg, len, 0};
  int rc = mp__get_u8(&r) == MP__PW_RESULT ? on_result(p, w, &r)
                                           : mp_set_error(MP_EPROTO, "pool: unexpected message");
  if (rc < 0) {
    w->eof = 1; /* its process's exit fails what it owed */
    mp_process_kill(w->proc);
  }
}

/* Reads what w sent (one system call) and handles every whole message of it: 0, or
 * MP_ETIMEDOUT when nothing had come. */
static int read_results(mp_pool *p, mp__worker *w) {
  int rc = 0;
  while (!w->eof && rc == 0) {
    const unsigned char *msg = NULL;
    size_t len = 0;
    rc = mp__conn_recv_borrow(w->conn, &msg, &len, 0);
    if (rc == 0)
      on_message(p, w, msg, len);
    else if (rc != MP_ETIMEDOUT)
      w->eof = 1;
    if (!mp__conn_buffered(w->conn))
      break;
  }
  return rc == MP_ETIMEDOUT ? rc : 0;
}

/* Puts a dead worker's unstarted tasks back at the front of the queue, in order. */
static void requeue(mp_pool *p, mp__task *first, mp__task *last) {
  mp__pool_lock(p);
  last->next = p->pend_head;
  p->pend_head = first;
  for (mp__task *t = first; t != last->next; t = t->next)
    p->npending++;
  if (p->pend_tail == NULL)
    p->pend_tail = last;
  mp__pool_unlock(p);
}

static void fail_pending_broken(mp_pool *p) {
  mp__pool_lock(p);
  mp__task *t = p->pend_head;
  p->pend_head = p->pend_tail = NULL;
  p->npending = 0;
  char msg[MP__POOL_MSG_MAX];
  snprintf(msg, sizeof msg, "%s", p->msg);
  mp__pool_unlock(p);
  mp__fail_tasks(t, MP_ECHILD, msg);
}

static int live_workers(const mp_pool *p) {
  int n = 0;
  for (int i = 0; i < p->nworkers; i++)
    n += p->w[i].proc != NULL;
  return n;
}

/* Fails the task a dead worker was running and queues the rest again. */
static void settle_dead(mp_pool *p, mp__worker *w, const char *how) {
  char msg[MP__POOL_MSG_MAX];
  mp__task *t = w->head;
  w->head = t->next;
  if (w->timed_out)
    snprintf(msg, sizeof msg, "task %llu ran longer than %d ms; its worker pid %lld was killed",
             (unsigned long long)t->id, p->task_timeout_ms, (long long)w->pid);
  else
    snprintf(msg, sizeof msg, "worker pid %lld %s while running task %llu", (long long)w->pid, how,
             (unsigned long long)t->id);
  t->next = NULL;
  mp__fail_tasks(t, w->timed_out ? MP_ETIMEDOUT : MP_EWORKER, msg);
  if (w->head)
    requeue(p, w->head, w->tail);
  w->head = w->tail = NULL;
}

/* The worker's process ended: collect what it sent, fail the task it was running, queue
 * the rest again and start a replacement. */
static void on_exit_worker(mp_pool *p, mp__worker *w) {
  while (!w->eof && read_results(p, w) == 0)
    ; /* what it answered before it died counts */
  char how[64];
  describe_exit(w, how, sizeof how);
  mp__pool_lock(p);
  p->pids[w - p->w] = 0; /* gone before anyone learns of its death */
  mp__pool_unlock(p);
  if (w->head)
    settle_dead(p, w, how);
  int stopping = w->stopping;
  worker_release(w);
  if (stopping || terminating(p) || worker_start(p, w) == 0 || mp_last_error_code() == MP_ECANCELED)
    return;
  mp__pool_lock(p);
  snprintf(p->msg, sizeof p->msg, "pool: no worker could be started: %s", mp_last_error());
  p->broken = live_workers(p) == 0;
  mp__pool_unlock(p);
}

static void check_timeouts(mp_pool *p) {
  if (p->task_timeout_ms <= 0)
    return;
  uint64_t now = mp_plat_monotonic_ns(), limit = (uint64_t)p->task_timeout_ms * 1000000u;
  for (int i = 0; i < p->nworkers; i++) {
    mp__worker *w = &p->w[i];
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
    mp__worker *w = &p->w[i];
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
  mp__worker **who = p->who;
  ws[n] = mp_waitable_conn(p->wake_r);
  who[n++] = NULL;
  for (int i = 0; i < p->nworkers; i++) {
    mp__worker *w = &p->w[i];
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
      mp__pool_drain_wake(p);
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
  for (int i = 0; i < p->nworkers; i++) {
    mp__worker *w = &p->w[i];
    size_t at;
    if (w->proc && !w->stopping && mp__conn_msg_begin(&w->out, &at) == 0 &&
        mp__buf_put_u8(&w->out, MP__PW_STOP) == 0 && mp__conn_msg_end(&w->out, at) == 0)
      w->stopping = 1;
  }
  flush_all(p);
}

static void run(mp_pool *p) {
  for (;;) {
    mp__pool_lock(p);
    if (p->state == MP__POOL_TERMINATING) {
      mp__pool_unlock(p);
      return;
    }
    assign_locked(p);
    int draining = p->state == MP__POOL_CLOSED && p->pend_head == NULL;
    int broken = p->broken && p->pend_head != NULL;
    int unsendable = p->unsendable != NULL;
    mp__pool_unlock(p);
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

/* Ends every worker and fails what is still queued or running. */
static void wind_down(mp_pool *p) {
  for (int i = 0; i < p->nworkers; i++) {
    mp__worker *w = &p->w[i];
    mp__task *t = w->head;
    w->head = NULL;
    worker_release(w);
    mp__fail_tasks(t, MP_ECANCELED, "the pool was terminated");
  }
  fail_unsendable(p);
  mp__pool_lock(p);
  mp__task *t = p->pend_head;
  p->pend_head = p->pend_tail = NULL;
  p->npending = 0;
  memset(p->pids, 0, (size_t)p->nworkers * sizeof *p->pids);
  mp__pool_unlock(p);
  mp__fail_tasks(t, MP_ECANCELED, "the pool was terminated");
}

void mp__pool_started(mp_pool *p, int rc) {
  mp__pool_lock(p);
  p->start_rc = rc;
  if (rc < 0)
    snprintf(p->msg, sizeof p->msg, "%s", mp_last_error());
  p->started = 1;
  mp_plat_cond_broadcast(&p->cv);
  mp__pool_unlock(p);
}

void mp__pool_thread(void *arg) {
  mp_pool *p = arg;
  int rc = 0;
  for (int i = 0; i < p->nworkers && rc == 0; i++)
    rc = worker_start(p, &p->w[i]);
  mp__pool_started(p, rc);
  if (rc == 0)
    run(p);
  wind_down(p);
  mp__pool_lock(p);
  p->done = 1;
  mp_plat_cond_broadcast(&p->cv);
  mp__pool_unlock(p);
}
