/* The pool's results: what a caller of apply, map or imap waits on (mp_result, mp_imap), and
 * how items are recorded into them. A map's answers are handed to its waiting caller
 * undecoded, so that decoding runs in the caller's thread, beside the master, where the
 * outputs will be freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "pool.h"
#include "pool_wire.h"
#include "value.h"

mp__job *mp__job_new(int kind, size_t n) {
  mp__job *j = calloc(1, sizeof *j);
  if (j && kind == MP__JOB_ONE && (j->out = calloc(1, sizeof *j->out)) == NULL) {
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

static void job_free(mp__job *j) {
  if (j->kind == MP__JOB_ONE) { /* a map's outputs are its caller's */
    mp_value_free(j->out[0]);
    free(j->out);
  }
  free(j->codes);
  free(j->err_msg);
  mp__buf_free(&j->raw);
  mp__buf_free(&j->spare);
  while (j->qhead) {
    mp__imap_ent *e = j->qhead;
    j->qhead = e->next;
    mp_value_free(e->v);
    free(e->msg);
    free(e);
  }
  mp_plat_cond_destroy(&j->cv);
  mp_plat_mutex_destroy(&j->mu);
  free(j);
}

void mp__job_unref(mp__job *j) {
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
static void items_finished(mp__job *j, int finished) {
  if (finished) {
    if (j->cb)
      j->cb(j, j->cb_arg);
    mp__job_unref(j);
  }
}

/* Records a failure under j->mu: the item's code, and the lowest failed index's message. */
static void record_failure_locked(mp__job *j, size_t idx, int code, const char *msg) {
  if (j->kind == MP__JOB_MAP && j->codes == NULL)
    j->codes = calloc(j->n, sizeof *j->codes); /* without memory, only err says it failed */
  if (j->codes)
    j->codes[idx] = code;
  if (j->err == 0 || idx < j->err_index) {
    j->err = code;
    j->err_index = idx;
    free(j->err_msg);
    j->err_msg = dup_str(msg);
  }
}

/* Records item idx's outcome under j->mu (v is taken). */
static void record_locked(mp__job *j, size_t idx, int code, const char *msg, mp_value *v) {
  if (j->kind == MP__JOB_IMAP) {
    mp__imap_ent *e = malloc(sizeof *e);
    if (e == NULL) {
      j->lost++;
      mp_value_free(v);
      return;
    }
    *e = (mp__imap_ent){NULL, idx, code, code ? dup_str(msg) : NULL, v};
    if (j->qtail)
      j->qtail->next = e;
    else
      j->qhead = e;
    j->qtail = e;
  } else if (code == 0) {
    j->out[idx] = v; /* MP__JOB_ONE; a map's outputs are decoded by its caller */
  } else {
    mp_value_free(v);
    record_failure_locked(j, idx, code, msg);
  }
}

void mp__job_item_done(mp__job *j, size_t idx, int code, const char *msg, mp_value *v) {
  mp_plat_mutex_lock(&j->mu);
  record_locked(j, idx, code, msg, v);
  int finished = --j->remaining == 0;
  if (finished || j->kind != MP__JOB_ONE)
    mp_plat_cond_broadcast(&j->cv); /* waiters want the end, or (imap, map) each item */
  mp_plat_mutex_unlock(&j->mu);
  items_finished(j, finished);
}

/* Queues a map task's answer for its caller to decode. */
static void hand_over(mp__job *j, size_t first, size_t count, mp__reader *r) {
  mp_plat_mutex_lock(&j->mu);
  size_t at = j->raw.len;
  int rc = mp__buf_reserve(&j->raw, 16 + r->left);
  rc = rc ? rc : mp__buf_put_u64(&j->raw, first);
  rc = rc ? rc : mp__buf_put_u32(&j->raw, (uint32_t)count);
  rc = rc ? rc : mp__buf_put_u32(&j->raw, (uint32_t)r->left);
  rc = rc ? rc : mp__buf_put(&j->raw, r->p, r->left);
  if (rc < 0) {
    j->raw.len = at;
    mp_plat_mutex_unlock(&j->mu);
    for (size_t i = 0; i < count; i++)
      mp__job_item_done(j, first + i, MP_ENOMEM, "pool: out of memory for an answer", NULL);
    return;
  }
  j->raw_items += count;
  j->remaining -= count;
  int finished = j->remaining == 0;
  /* Wake-ups cost more than tiny answers: the waiting caller is woken for a batch. */
  if (finished || (j->caller_waiting && j->raw_items >= 256))
    mp_plat_cond_broadcast(&j->cv);
  mp_plat_mutex_unlock(&j->mu);
  items_finished(j, finished);
}

void mp__job_answer(mp__job *j, size_t first, size_t count, mp__reader *r) {
  if (j->kind == MP__JOB_MAP) {
    hand_over(j, first, count, r);
    return;
  }
  char msg[MP__POOL_MSG_MAX];
  mp__value_arena a;
  mp__value_arena_init(&a, count);
  mp_plat_mutex_lock(&j->mu);
  for (size_t i = 0; i < count; i++) {
    mp_value *v;
    msg[0] = '\0';
    int code = mp__pw_read_item(r, &a, &v, msg, sizeof msg);
    record_locked(j, first + i, code, msg, v);
  }
  mp__value_arena_done(&a);
  j->remaining -= count;
  int finished = j->remaining == 0;
  if (finished || j->kind == MP__JOB_IMAP)
    mp_plat_cond_broadcast(&j->cv);
  mp_plat_mutex_unlock(&j->mu);
  items_finished(j, finished);
}

/* Waits until pred holds for j (under j->mu): 0 or MP_ETIMEDOUT. */
static int wait_locked(mp__job *j, int (*pred)(mp__job *), int timeout_ms) {
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  while (rc == 0 && !pred(j))
    if (mp_plat_cond_wait(&j->cv, &j->mu, deadline) == MP_ETIMEDOUT && !pred(j))
      rc = mp_set_error(MP_ETIMEDOUT, "pool: the result is not ready after %d ms", timeout_ms);
  return rc;
}

static int finished(mp__job *j) { return j->remaining == 0; }
static int imap_has_next(mp__job *j) { return j->qhead != NULL || j->lost > 0 || j->given == j->n; }

/* ---- maps: the caller decodes its answers --------------------------------------------- */

/* Decodes one answer (outside the lock) into the caller's outputs. */
static void decode_answer(mp__job *j, size_t first, size_t count, mp__reader *r) {
  char msg[MP__POOL_MSG_MAX];
  mp__value_arena arena; /* the outputs of one answer share one allocation */
  mp__value_arena_init(&arena, count);
  for (size_t i = 0; i < count; i++) {
    mp_value *v;
    msg[0] = '\0';
    int code = mp__pw_read_item(r, &arena, &v, msg, sizeof msg);
    if (code == 0) {
      j->out[first + i] = v; /* only this thread writes a map's outputs */
      continue;
    }
    mp_plat_mutex_lock(&j->mu);
    record_failure_locked(j, first + i, code, msg);
    mp_plat_mutex_unlock(&j->mu);
  }
  mp__value_arena_done(&arena);
}

static void decode_answers(mp__job *j, const mp__buf *raw) {
  mp__reader r = {raw->data, raw->len, 0};
  while (r.left > 0) {
    size_t first = (size_t)mp__get_u64(&r), count = mp__get_u32(&r), len = mp__get_u32(&r);
    mp__reader items = {mp__get_bytes(&r, len), len, 0};
    decode_answer(j, first, count, &items); /* the master wrote these records whole */
  }
}

/* Decodes what has arrived, then waits for more: 0 once every item is in, MP_ETIMEDOUT. */
static int collect(mp__job *j, int64_t deadline_ns) {
  int rc = 0;
  mp_plat_mutex_lock(&j->mu);
  for (;;) {
    if (j->raw.len > 0) { /* the two buffers take turns: the master fills one */
      mp__buf full = j->raw;
      j->raw = j->spare;
      j->raw_items = 0;
      mp_plat_mutex_unlock(&j->mu);
      decode_answers(j, &full);
      mp_plat_mutex_lock(&j->mu);
      j->spare = full;
      j->spare.len = 0;
      continue;
    }
    if (j->remaining == 0 || rc < 0)
      break;
    j->caller_waiting = 1;
    if (mp_plat_cond_wait(&j->cv, &j->mu, deadline_ns) == MP_ETIMEDOUT)
      rc = MP_ETIMEDOUT; /* one more pass takes what came meanwhile */
    j->caller_waiting = 0;
  }
  if (j->remaining == 0)
    rc = 0;
  mp_plat_mutex_unlock(&j->mu);
  return rc;
}

/* The code of item i after collect: 0 (an output), its failure, or MP_ETIMEDOUT. */
static int item_code(const mp__job *j, size_t i) {
  if (j->out[i])
    return 0;
  if (j->codes && j->codes[i])
    return j->codes[i];
  return j->remaining ? MP_ETIMEDOUT : j->err; /* err: a failure without memory to say which */
}

int mp__map_collect(mp__job *j, mp_value **outputs, int *codes, int per_item, int64_t deadline_ns,
                    int timeout_ms, size_t (*on_timeout)(void *ctx, mp__job *j), void *ctx) {
  size_t cancelled = 0;
  if (collect(j, deadline_ns) == MP_ETIMEDOUT) {
    cancelled = on_timeout(ctx, j); /* no task of the pool reads the inputs after this */
    collect(j, 0);                  /* what arrived meanwhile */
  }
  mp_plat_mutex_lock(&j->mu);
  size_t pending = j->remaining + cancelled;
  int err = j->err;
  size_t err_index = j->err_index;
  char msg[MP__POOL_MSG_MAX];
  snprintf(msg, sizeof msg, "%s", j->err_msg ? j->err_msg : mp_strerror(err));
  for (size_t i = 0; codes && i < j->n; i++)
    codes[i] = item_code(j, i);
  j->out = NULL; /* answers that still come are dropped with the job */
  mp_plat_mutex_unlock(&j->mu);
  if (!per_item && (err < 0 || pending))
    for (size_t i = 0; i < j->n; i++) {
      mp_value_free(outputs[i]);
      outputs[i] = NULL;
    }
  int rc = 0;
  if (pending)
    rc = mp_set_error(MP_ETIMEDOUT, "pool: %llu of %llu results not ready after %d ms",
                      (unsigned long long)pending, (unsigned long long)j->n, timeout_ms);
  else if (err < 0)
    rc = mp_set_error(err, "input %llu: %s", (unsigned long long)err_index, msg);
  return rc;
}

/* ---- mp_result and mp_imap -------------------------------------------------------------- */

int mp_result_wait(mp_result *r, int timeout_ms) {
  if (r == NULL)
    return mp_set_error(MP_EINVAL, "mp_result_wait: result is NULL");
  mp_plat_mutex_lock(&r->mu);
  int rc = wait_locked(r, finished, timeout_ms);
  mp_plat_mutex_unlock(&r->mu);
  return rc;
}

/* Waits for r and gives its output: borrowed (take = 0) or taken away (take = 1). */
static int result_out(mp_result *r, mp_value **value, int timeout_ms, int take, const char *fn) {
  if (value)
    *value = NULL;
  if (r == NULL)
    return mp_set_error(MP_EINVAL, "%s: result is NULL", fn);
  int rc = mp_result_wait(r, timeout_ms);
  if (rc < 0)
    return rc;
  mp_plat_mutex_lock(&r->mu);
  if (r->err < 0) {
    rc = mp_set_error(r->err, "%s", r->err_msg ? r->err_msg : mp_strerror(r->err));
  } else if (r->taken) {
    rc = mp_set_error(MP_ESTATE, "%s: the output was already taken by mp_result_take", fn);
  } else if (take) {
    r->taken = 1;
    if (value)
      *value = r->out[0];
    else
      mp_value_free(r->out[0]); /* taken and not wanted: gone all the same */
    r->out[0] = NULL;
  } else if (value) {
    *value = r->out[0];
  }
  mp_plat_mutex_unlock(&r->mu);
  return rc;
}

int mp_result_get(mp_result *r, mp_value **value, int timeout_ms) {
  return result_out(r, value, timeout_ms, 0, "mp_result_get");
}

int mp_result_take(mp_result *r, mp_value **value, int timeout_ms) {
  return result_out(r, value, timeout_ms, 1, "mp_result_take");
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
    mp__job_unref(r);
}

int mp_imap_next(mp_imap *it, size_t *index, mp_value **value, int timeout_ms) {
  if (value)
    *value = NULL;
  if (it == NULL)
    return mp_set_error(MP_EINVAL, "mp_imap_next: iterator is NULL");
  mp__job *j = it->j;
  mp_plat_mutex_lock(&j->mu);
  int rc = wait_locked(j, imap_has_next, timeout_ms);
  mp__imap_ent *e = NULL;
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
  mp__job_unref(it->j);
  free(it);
}
