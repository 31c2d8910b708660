/* Process pools, like multiprocessing.Pool: the public calls. They queue tasks for the
 * master thread (pool_master.c), which runs them on the workers (pool_worker.c), and wait
 * on jobs (pool_result.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "connection.h"
#include "deadline.h"
#include "pool.h"
#include "pool_wire.h"
#include "proc.h"
#include "target.h"
#include "value.h"

void mp__pool_lock(mp_pool *p) { mp_plat_mutex_lock(&p->mu); }
void mp__pool_unlock(mp_pool *p) { mp_plat_mutex_unlock(&p->mu); }

/* One byte in flight at a time is enough to wake the master. */
void mp__pool_wake_locked(mp_pool *p) {
  if (!p->wake_pending && mp_conn_send(p->wake_w, "", 0) == 0)
    p->wake_pending = 1;
}

/* ---- tasks ------------------------------------------------------------------------------ */

void mp__task_free(mp__task *t) {
  for (size_t i = 0; i < t->nhandles; i++)
    mp_plat_handle_close(t->handles[i]);
  free(t->handles);
  if (t->body != t->small)
    free(t->body);
  free(t);
}

void mp__fail_tasks(mp__task *t, int code, const char *msg) {
  while (t) {
    mp__task *next = t->next;
    mp__job *j = t->j;
    size_t first = t->first, count = t->count;
    mp__task_free(t); /* before the record that may end the job */
    for (size_t i = 0; i < count; i++)
      mp__job_item_done(j, first + i, code, msg, NULL);
    t = next;
  }
}

static void free_list(mp__task *t) {
  while (t) {
    mp__task *next = t->next;
    mp__task_free(t);
    t = next;
  }
}

int mp__task_encode(mp__task *t, mp__buf *b) {
  b->len = 0;
  int rc = mp__buf_put_u8(b, MP__PW_TASK);
  rc = rc ? rc : mp__buf_put_u32(b, t->fnid);
  rc = rc ? rc : mp__buf_put_u8(b, t->flags);
  rc = rc ? rc : mp__buf_put_u32(b, (uint32_t)t->count);
  for (size_t i = 0; rc == 0 && i < t->count; i++)
    rc = mp__value_encode_append(t->inputs[t->first + i], b);
  if (rc < 0)
    return rc;
  t->body = b->len <= sizeof t->small ? t->small : malloc(b->len);
  if (t->body == NULL)
    return mp_set_error(MP_ENOMEM, "pool: out of memory for a task of %zu bytes", b->len);
  memcpy(t->body, b->data, b->len);
  t->len = b->len;
  t->inputs = NULL;
  return 0;
}

/* lazy: the master encodes the task when it sends it (a map, whose caller keeps the inputs
 * alive and waits), so encoding runs beside the caller's decoding. */
static int task_new(mp__job *j, size_t first, size_t count, uint32_t fnid, unsigned flags,
                    const mp_value *const *inputs, int lazy, mp__task **out) {
  /* malloc, not calloc: before 2.41 glibc serves calloc without its thread cache */
  mp__task *t = malloc(sizeof *t);
  if (t == NULL)
    return mp_set_error(MP_ENOMEM, "pool: out of memory for a task");
  t->next = NULL;
  t->id = 0;
  t->j = j;
  t->first = first;
  t->count = count;
  t->fnid = fnid;
  t->flags = flags;
  t->inputs = inputs;
  t->body = NULL;
  t->len = 0;
  t->handles = NULL;
  t->nhandles = 0;
  mp__buf scratch = {0};
  int rc = lazy ? 0 : mp__task_encode(t, &scratch);
  mp__buf_free(&scratch);
  if (rc < 0) {
    free(t);
    return rc;
  }
  *out = t;
  return 0;
}

/* A task that calls fn with an argument list: the list encoded now, and this pool's own
 * copies of the handles its objects need, so the caller may free them at once. */
static int args_task_new(mp__job *j, uint32_t fnid, const mp_args *args, mp__task **out) {
  mp_plat_handle h[MP_PLAT_MAX_PASS];
  size_t nh = 0;
  mp__buf b = {0};
  int rc = task_new(j, 0, 1, fnid, MP__PW_ARGS, NULL, 1, out);
  rc = rc ? rc : mp__args_encode_append(args, &b, h, &nh, MP_PLAT_MAX_PASS);
  mp__task *t = rc ? NULL : *out;
  if (t) {
    t->body = b.data;
    t->len = b.len;
    t->handles = malloc((nh ? nh : 1) * sizeof *t->handles);
    rc = t->handles ? 0 : mp_set_error(MP_ENOMEM, "pool: out of memory for a task's handles");
  }
  for (size_t i = 0; rc == 0 && i < nh; i++) {
    rc = mp_plat_handle_dup(h[i], &t->handles[i]);
    t->nhandles += rc == 0;
  }
  if (rc < 0 && *out) {
    if (t == NULL)
      mp__buf_free(&b);
    mp__task_free(*out);
    *out = NULL;
  }
  return rc;
}

/* ---- the pool ---------------------------------------------------------------------------- */

static int check_opts(const mp_pool_opts *o) {
  if (o->maxtasksperchild < 0)
    return mp_set_error(MP_EINVAL, "mp_pool_create: maxtasksperchild is %d", o->maxtasksperchild);
  if (o->task_timeout_ms < 0 && o->task_timeout_ms != MP_NO_LIMIT &&
      o->task_timeout_ms != MP_DEFAULT_TIMEOUT)
    return mp_set_error(MP_EINVAL,
                        "mp_pool_create: task_timeout_ms is %d (use ms > 0, 0 or MP_NO_LIMIT)",
                        o->task_timeout_ms);
  return mp__start_method_check(o->method, "mp_pool_create");
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
  mp__buf_free(&p->init_ref);
  mp__buf_free(&p->scratch);
  mp__buf_free(&p->answer_bufs[0]);
  mp__buf_free(&p->answer_bufs[1]);
  for (size_t i = 0; i < p->nfns; i++)
    mp__buf_free(&p->fns[i].ref);
  free(p->fns);
  free(p->w);
  free(p->pids);
  free(p->ws);
  free(p->who);
  if (p->remote)
    p->remote_free(p->remote);
  mp_plat_cond_destroy(&p->cv);
  mp_plat_mutex_destroy(&p->mu);
  free(p);
}

static int pool_setup(mp_pool *p, int nworkers, const mp_pool_opts *o) {
  p->nworkers = nworkers;
  p->method = o->method;
  p->maxtasks = (uint64_t)o->maxtasksperchild;
  p->task_timeout_ms = o->task_timeout_ms > 0 ? o->task_timeout_ms : 0;
  p->w = calloc((size_t)nworkers, sizeof *p->w);
  p->pids = calloc((size_t)nworkers, sizeof *p->pids);
  p->ws = calloc(1 + 2 * (size_t)nworkers, sizeof *p->ws);
  p->who = calloc(1 + 2 * (size_t)nworkers, sizeof *p->who);
  if (p->w == NULL || p->pids == NULL || p->ws == NULL || p->who == NULL)
    return mp_set_error(MP_ENOMEM, "mp_pool_create: out of memory for %d workers", nworkers);
  p->initargs = o->initargs ? mp_value_copy(o->initargs) : NULL;
  int rc = o->initargs && p->initargs == NULL ? mp_last_error_code() : 0;
  if (rc == 0 && o->initializer)
    rc = mp__fnref_encode((void (*)(void))o->initializer, &p->init_ref);
  return rc ? rc : mp_pipe(&p->wake_r, &p->wake_w, 0);
}

int mp__pool_create_with(mp_pool **pool, int nworkers, const mp_pool_opts *opts,
                         void (*thread)(void *), struct mp__rpool *remote,
                         void (*remote_free)(struct mp__rpool *)) {
  mp_pool_opts none;
  memset(&none, 0, sizeof none);
  const mp_pool_opts *o = opts ? opts : &none;
  int rc = pool == NULL ? mp_set_error(MP_EINVAL, "mp_pool_create: pool is NULL") : 0;
  if (rc == 0 && nworkers < 0)
    rc = mp_set_error(MP_EINVAL, "mp_pool_create: nworkers is %d", nworkers);
  rc = rc ? rc : check_opts(o);
  mp_pool *p = rc ? NULL : calloc(1, sizeof *p);
  if (rc == 0 && p == NULL)
    rc = mp_set_error(MP_ENOMEM, "mp_pool_create: out of memory");
  if (rc < 0) {
    if (pool)
      *pool = NULL;
    if (remote)
      remote_free(remote);
    return rc;
  }
  *pool = NULL;
  mp_plat_mutex_init(&p->mu);
  mp_plat_cond_init(&p->cv);
  p->remote = remote;
  p->remote_free = remote_free;
  rc = pool_setup(p, nworkers ? nworkers : mp_cpu_count(), o);
  rc = rc ? rc : mp_thread_create(&p->thread, thread, p, "PoolMaster");
  if (rc == 0) {
    mp__pool_lock(p);
    while (!p->started)
      mp_plat_cond_wait(&p->cv, &p->mu, -1);
    rc = p->start_rc;
    mp__pool_unlock(p);
    if (rc < 0)
      mp_set_error(rc, "mp_pool_create: %s", p->msg);
  }
  if (rc < 0) {
    char msg[MP__POOL_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", mp_last_error());
    pool_destroy(p);
    return mp_set_error(rc, "%s", msg);
  }
  *pool = p;
  return 0;
}

int mp_pool_create(mp_pool **pool, int nworkers, const mp_pool_opts *opts) {
  return mp__pool_create_with(pool, nworkers, opts, mp__pool_thread, NULL, NULL);
}

int mp_pool_close(mp_pool *p) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_pool_close: pool is NULL");
  mp__pool_lock(p);
  if (p->state == MP__POOL_OPEN) {
    p->state = MP__POOL_CLOSED;
    mp__pool_wake_locked(p);
  }
  mp__pool_unlock(p);
  return 0;
}

static void join_thread(mp_pool *p) {
  mp__pool_lock(p);
  int join = !p->thread_joined;
  p->thread_joined = 1;
  mp__pool_unlock(p);
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
  mp__pool_lock(p);
  if (p->state == MP__POOL_OPEN)
    rc = mp_set_error(MP_ESTATE, "mp_pool_join: close or terminate the pool first");
  while (rc == 0 && !p->done)
    if (mp_plat_cond_wait(&p->cv, &p->mu, deadline) == MP_ETIMEDOUT && !p->done)
      rc = mp_set_error(MP_ETIMEDOUT, "mp_pool_join: work still runs after %d ms", timeout_ms);
  mp__pool_unlock(p);
  if (rc == 0)
    join_thread(p);
  return rc;
}

int mp_pool_terminate(mp_pool *p) {
  if (p == NULL)
    return mp_set_error(MP_EINVAL, "mp_pool_terminate: pool is NULL");
  mp__pool_lock(p);
  if (!p->done) {
    p->state = MP__POOL_TERMINATING;
    mp__pool_wake_locked(p);
  }
  while (!p->done)
    mp_plat_cond_wait(&p->cv, &p->mu, -1);
  mp__pool_unlock(p);
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
  mp__pool_lock(p);
  for (int i = 0; i < p->nworkers && k < max; i++)
    if (p->pids[i])
      pids[k++] = p->pids[i];
  mp__pool_unlock(p);
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

/* The index of fn in the pool's table (each worker is told a function once, by index). */
static int fn_index_locked(mp_pool *p, void (*fn)(void), uint32_t *id) {
  for (size_t i = 0; i < p->nfns; i++)
    if (p->fns[i].fn == fn) {
      *id = (uint32_t)i;
      return 1;
    }
  return 0;
}

static int fn_id(mp_pool *p, void (*fn)(void), uint32_t *id) {
  mp__pool_lock(p);
  int known = fn_index_locked(p, fn, id);
  mp__pool_unlock(p);
  if (known)
    return 0;
  mp__fnref f = {fn, {0}};
  int rc = mp__fnref_encode(fn, &f.ref); /* outside the lock: it may read the module */
  if (rc < 0)
    return rc;
  mp__pool_lock(p);
  if (fn_index_locked(p, fn, id)) { /* another thread was first */
    mp__pool_unlock(p);
    mp__buf_free(&f.ref);
    return 0;
  }
  mp__fnref *fns = realloc(p->fns, (p->nfns + 1) * sizeof *fns);
  if (fns == NULL)
    rc = mp_set_error(MP_ENOMEM, "pool: out of memory for a function reference");
  else {
    p->fns = fns;
    *id = (uint32_t)p->nfns;
    p->fns[p->nfns++] = f;
  }
  mp__pool_unlock(p);
  if (rc < 0)
    mp__buf_free(&f.ref);
  return rc;
}

/* Appends a list of tasks to the queue, unless the pool no longer takes work. */
static int submit(mp_pool *p, mp__task *head, mp__task *tail, const char *who) {
  mp__pool_lock(p);
  if (p->state != MP__POOL_OPEN) {
    int closed = p->state == MP__POOL_CLOSED;
    mp__pool_unlock(p);
    return mp_set_error(MP_ESTATE, "%s: the pool was %s", who, closed ? "closed" : "terminated");
  }
  for (mp__task *t = head; t; t = t->next) {
    t->id = p->next_id++;
    p->npending++;
  }
  if (p->pend_tail)
    p->pend_tail->next = head;
  else
    p->pend_head = head;
  p->pend_tail = tail;
  mp__pool_wake_locked(p);
  mp__pool_unlock(p);
  return 0;
}

/* Queues one task for one result: the input value, or an argument list. */
static int apply_one(mp_pool *p, void (*fn)(void), const mp_value *input, const mp_args *args,
                     mp_result_cb cb, void *arg, mp_result **result, const char *who) {
  if (result)
    *result = NULL;
  if (p == NULL || fn == NULL || result == NULL)
    return mp_set_error(MP_EINVAL, "%s: pool, fn or result is NULL", who);
  if (args && p->remote)
    return mp_set_error(MP_ENOTSUP,
                        "%s: a Redis pool's tasks take values, not argument lists (their "
                        "objects cannot travel to other machines)",
                        who);
  uint32_t fnid;
  int rc = fn_id(p, fn, &fnid);
  if (rc < 0)
    return rc;
  mp__job *j = mp__job_new(MP__JOB_ONE, 1);
  if (j == NULL)
    return MP_ENOMEM;
  j->cb = cb;
  j->cb_arg = arg;
  mp__task *t = NULL;
  rc = args ? args_task_new(j, fnid, args, &t) : task_new(j, 0, 1, fnid, 0, &input, 0, &t);
  rc = rc ? rc : submit(p, t, t, who);
  if (rc < 0) {
    free_list(t);
    mp__job_unref(j);
    mp__job_unref(j);
    return rc;
  }
  *result = j;
  return 0;
}

int mp_pool_apply_async_cb(mp_pool *p, mp_task_fn fn, const mp_value *input, mp_result_cb cb,
                           void *arg, mp_result **result) {
  return apply_one(p, (void (*)(void))fn, input, NULL, cb, arg, result, "mp_pool_apply_async");
}

int mp_pool_apply_async(mp_pool *p, mp_task_fn fn, const mp_value *input, mp_result **result) {
  return mp_pool_apply_async_cb(p, fn, input, NULL, NULL, result);
}

int mp_pool_apply_args_async(mp_pool *p, mp_args_task_fn fn, const mp_args *args,
                             mp_result **result) {
  if (args == NULL) {
    if (result)
      *result = NULL;
    return mp_set_error(MP_EINVAL, "mp_pool_apply_args_async: args is NULL");
  }
  return apply_one(p, (void (*)(void))fn, NULL, args, NULL, NULL, result,
                   "mp_pool_apply_args_async");
}

/* Waits for a result of one's own making and takes its output. */
static int wait_and_take(mp_result *r, mp_value **output) {
  int rc = mp_result_take(r, output, MP_FOREVER);
  mp_result_free(r);
  return rc;
}

int mp_pool_apply(mp_pool *p, mp_task_fn fn, const mp_value *input, mp_value **output) {
  if (output)
    *output = NULL;
  mp_result *r = NULL;
  int rc = mp_pool_apply_async(p, fn, input, &r);
  return rc < 0 ? rc : wait_and_take(r, output);
}

int mp_pool_apply_args(mp_pool *p, mp_args_task_fn fn, const mp_args *args, mp_value **output) {
  if (output)
    *output = NULL;
  mp_result *r = NULL;
  int rc = mp_pool_apply_args_async(p, fn, args, &r);
  return rc < 0 ? rc : wait_and_take(r, output);
}

/* The default chunk size: as Python's, n / (4 * workers) rounded up. */
static size_t default_chunksize(const mp_pool *p, size_t n) {
  size_t per = 4 * (size_t)p->nworkers;
  size_t c = n / per + (n % per != 0);
  return c ? c : 1;
}

/* Queues fn over inputs in chunks; the returned job collects the results (a map's into
 * outputs, which are NULL until then). */
static int map_submit(mp_pool *p, void (*fn)(void), unsigned flags, const mp_value *const *inputs,
                      size_t n, size_t chunksize, int kind, mp_value **outputs, const char *who,
                      mp__job **out) {
  if (p == NULL || fn == NULL || (inputs == NULL && n > 0))
    return mp_set_error(MP_EINVAL, "%s: pool, fn or inputs is NULL", who);
  for (size_t i = 0; (flags & MP__PW_STAR) && i < n; i++) {
    int type = mp_value_type_of(inputs[i]);
    if (type != MP_VALUE_TUPLE && type != MP_VALUE_LIST)
      return mp_set_error(MP_EINVAL, "%s: input %llu is not a tuple or list", who,
                          (unsigned long long)i);
  }
  chunksize = chunksize ? chunksize : default_chunksize(p, n);
  uint32_t fnid;
  int rc = fn_id(p, fn, &fnid);
  mp__job *j = rc < 0 ? NULL : mp__job_new(kind, n);
  if (j == NULL)
    return rc < 0 ? rc : MP_ENOMEM;
  for (size_t i = 0; outputs && i < n; i++)
    outputs[i] = NULL;
  j->out = outputs;
  if (kind == MP__JOB_MAP) { /* before any task can answer */
    mp__pool_lock(p);
    j->raw = p->answer_bufs[0];
    j->spare = p->answer_bufs[1];
    memset(p->answer_bufs, 0, sizeof p->answer_bufs);
    mp__pool_unlock(p);
  }
  /* Batches go out as they are made, so the workers start while the rest is made. */
  mp__task *head = NULL, *tail = NULL;
  size_t batch = 0, i = 0;
  for (; rc == 0 && i < n; i += chunksize) {
    mp__task *t = NULL;
    rc = task_new(j, i, n - i < chunksize ? n - i : chunksize, fnid, flags, inputs,
                  kind == MP__JOB_MAP, &t);
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
    char msg[MP__POOL_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", mp_last_error());
    mp__fail_tasks(head, rc, msg);
    for (size_t k = i; k < n; k++) /* never queued */
      mp__job_item_done(j, k, rc, msg, NULL);
    if (kind == MP__JOB_MAP) /* queued tasks may still read the caller's inputs */
      mp__map_collect(j, outputs, NULL, 0, -1, MP_FOREVER, NULL, NULL);
    mp__job_unref(j);
    return mp_set_error(rc, "%s", msg);
  }
  if (n == 0)
    j->refs = 1; /* nothing for the pool to finish */
  *out = j;
  return 0;
}

/* Ends the caller's part in a map: the answer buffers of a finished one go back to the pool
 * for the next map; then the caller's reference goes. */
static int map_done(mp_pool *p, mp__job *j, int rc) {
  mp__buf bufs[2] = {{0}, {0}};
  mp_plat_mutex_lock(&j->mu);
  if (j->remaining == 0) { /* nothing will be appended any more */
    bufs[0] = j->raw;
    bufs[1] = j->spare;
    memset(&j->raw, 0, sizeof j->raw);
    memset(&j->spare, 0, sizeof j->spare);
  }
  mp_plat_mutex_unlock(&j->mu);
  mp__job_unref(j);
  mp__pool_lock(p);
  for (int i = 0; i < 2; i++) {
    bufs[i].len = 0;
    if (p->answer_bufs[i].data == NULL)
      p->answer_bufs[i] = bufs[i];
    else
      mp__buf_free(&bufs[i]);
  }
  mp__pool_unlock(p);
  return rc;
}

/* A map that timed out: its tasks still queued are cancelled (they would read inputs that
 * are about to go away); those the workers have run on and are dropped with the job. */
static size_t cancel_queued(void *ctx, mp__job *j) {
  mp_pool *p = ctx;
  mp__task *mine = NULL, **link = &p->pend_head, *last = NULL;
  size_t items = 0;
  mp__pool_lock(p);
  while (*link) {
    mp__task *t = *link;
    if (t->j != j) {
      last = t;
      link = &t->next;
      continue;
    }
    *link = t->next;
    p->npending--;
    items += t->count;
    t->next = mine;
    mine = t;
  }
  p->pend_tail = last;
  mp__pool_unlock(p);
  mp__fail_tasks(mine, MP_ETIMEDOUT, "the map timed out before this input was sent");
  return items;
}

int mp_pool_map_ex(mp_pool *p, mp_task_fn fn, const mp_value *const *inputs, size_t n,
                   const mp_map_opts *opts, mp_value **outputs, int *codes) {
  mp_map_opts none;
  memset(&none, 0, sizeof none);
  const mp_map_opts *o = opts ? opts : &none;
  int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : MP_FOREVER;
  if (o->timeout_ms < 0 && o->timeout_ms != MP_NO_LIMIT && o->timeout_ms != MP_DEFAULT_TIMEOUT)
    return mp_set_error(MP_EINVAL,
                        "mp_pool_map_ex: timeout_ms is %d (use ms > 0, 0 or "
                        "MP_NO_LIMIT)",
                        o->timeout_ms);
  if (outputs == NULL && n > 0)
    return mp_set_error(MP_EINVAL, "mp_pool_map_ex: outputs is NULL");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  mp__job *j = NULL;
  rc = rc ? rc
          : map_submit(p, (void (*)(void))fn, 0, inputs, n, o->chunksize, MP__JOB_MAP, outputs,
                       "mp_pool_map_ex", &j);
  if (rc < 0)
    return rc;
  rc = mp__map_collect(j, outputs, codes, 1, deadline, timeout_ms, cancel_queued, p);
  return map_done(p, j, rc);
}

static int map_plain(mp_pool *p, void (*fn)(void), unsigned flags, const mp_value *const *inputs,
                     size_t n, size_t chunksize, mp_value **outputs, const char *who) {
  if (outputs == NULL && n > 0)
    return mp_set_error(MP_EINVAL, "%s: outputs is NULL", who);
  mp__job *j = NULL;
  int rc = map_submit(p, fn, flags, inputs, n, chunksize, MP__JOB_MAP, outputs, who, &j);
  if (rc < 0)
    return rc;
  rc = mp__map_collect(j, outputs, NULL, 0, -1, MP_FOREVER, NULL, NULL);
  return map_done(p, j, rc);
}

int mp_pool_map(mp_pool *p, mp_task_fn fn, const mp_value *const *inputs, size_t n,
                size_t chunksize, mp_value **outputs) {
  return map_plain(p, (void (*)(void))fn, 0, inputs, n, chunksize, outputs, "mp_pool_map");
}

int mp_pool_starmap(mp_pool *p, mp_star_fn fn, const mp_value *const *inputs, size_t n,
                    size_t chunksize, mp_value **outputs) {
  return map_plain(p, (void (*)(void))fn, MP__PW_STAR, inputs, n, chunksize, outputs,
                   "mp_pool_starmap");
}

int mp_pool_imap_unordered(mp_pool *p, mp_task_fn fn, const mp_value *const *inputs, size_t n,
                           size_t chunksize, mp_imap **it) {
  if (it == NULL)
    return mp_set_error(MP_EINVAL, "mp_pool_imap_unordered: it is NULL");
  *it = calloc(1, sizeof **it);
  if (*it == NULL)
    return mp_set_error(MP_ENOMEM, "mp_pool_imap_unordered: out of memory");
  int rc = map_submit(p, (void (*)(void))fn, 0, inputs, n, chunksize, MP__JOB_IMAP, NULL,
                      "mp_pool_imap_unordered", &(*it)->j);
  if (rc < 0) {
    free(*it);
    *it = NULL;
  }
  return rc;
}
