/* A worker of the distributed pool (mp_worker_serve): takes tasks from the pool's stream
 * in batches (XREADGROUP), runs them with the local pool worker's code (pool_worker.c),
 * and answers each batch in one round trip: RPUSH of the answers to their masters' lists,
 * then XACK and XDEL of the entries. A heartbeat thread refreshes the entries it holds
 * (XCLAIM ... JUSTID) every lease / 4, so that only a dead or frozen worker's tasks look
 * idle to the masters' reclaim script. Formats: redis_pool.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "pool_wire.h"
#include "redis.h"
#include "redis_pool.h"
#include "target.h"

#define FN_CACHE 8

typedef struct fncache {
  mp_plat_target t; /* empty module and no fingerprint: unused */
  int used;
  void (*fn)(void);
  char error[256];
} fncache;

typedef struct wk {
  mp__redis *r, *hb;
  char name[128], k_tasks[MP_REDIS_NAME_MAX + 32];
  size_t batch;
  uint64_t max_tasks, done;
  int idle_exit_ms;
  fncache fns[FN_CACHE];
  unsigned next_fn;
  mp__rentry ents[MP_REDIS_MAX_PREFETCH];
  mp__buf out; /* answers of one flush, one after another */
  size_t ends[MP_REDIS_MAX_PREFETCH];
  size_t nout;
  char key[MP__RP_KEY_MAX + 1]; /* their reply key */
  /* the heartbeat's: ids held (the batch), the lease they need, stop */
  mp_plat_mutex mu;
  mp_plat_cond cv;
  size_t nheld;
  char beat_ids[MP_REDIS_MAX_PREFETCH][MP_REDIS_ID_MAX]; /* the heartbeat's copy */
  uint32_t lease_ms;
  int stop;
  mp_thread *thread;
} wk;

static int on_connect(mp__redis *r, void *arg) {
  wk *w = arg;
  return mp__rp_make_group(r, w->k_tasks);
}

/* ---- the heartbeat --------------------------------------------------------------------- */

/* XCLAIM ... JUSTID of the ids held: resets their idle time, so no master reclaims them. */
static void refresh(wk *w, char (*ids)[MP_REDIS_ID_MAX], size_t n) {
  const char **argv = malloc((n + 6) * sizeof *argv);
  size_t *lens = malloc((n + 6) * sizeof *lens);
  if (argv && lens && mp__redis_ensure(w->hb, -1) == 0) {
    const char *head[5] = {"XCLAIM", w->k_tasks, MP__RP_GROUP, w->name, "0"};
    for (int i = 0; i < 5; i++) {
      argv[i] = head[i];
      lens[i] = strlen(head[i]);
    }
    for (size_t i = 0; i < n; i++) {
      argv[5 + i] = ids[i];
      lens[5 + i] = strlen(ids[i]);
    }
    argv[5 + n] = "JUSTID";
    lens[5 + n] = 6;
    redisReply *reply = NULL;
    mp__redis_call(w->hb, (int)n + 6, argv, lens, &reply); /* a miss: the next beat */
    mp__redis_reply_free(reply);
  }
  free(argv);
  free(lens);
}

static void heartbeat(void *arg) {
  wk *w = arg;
  mp_plat_mutex_lock(&w->mu);
  while (!w->stop) {
    if (w->nheld == 0) {
      mp_plat_cond_wait(&w->cv, &w->mu, -1);
      continue;
    }
    int64_t beat = (int64_t)mp_plat_monotonic_ns() + (int64_t)w->lease_ms * 250000;
    while (!w->stop && w->nheld > 0 && (int64_t)mp_plat_monotonic_ns() < beat)
      mp_plat_cond_wait(&w->cv, &w->mu, beat);
    if (w->stop || w->nheld == 0)
      continue;
    size_t n = w->nheld; /* copied under the lock: the main thread reuses ents after */
    for (size_t i = 0; i < n; i++)
      memcpy(w->beat_ids[i], w->ents[i].id, MP_REDIS_ID_MAX);
    mp_plat_mutex_unlock(&w->mu);
    refresh(w, w->beat_ids, n);
    mp_plat_mutex_lock(&w->mu);
  }
  mp_plat_mutex_unlock(&w->mu);
}

/* Says which of ents the worker holds (n; 0: none) and the lease they need. */
static void hold(wk *w, size_t n, uint32_t lease_ms) {
  mp_plat_mutex_lock(&w->mu);
  w->nheld = n;
  w->lease_ms = lease_ms;
  mp_plat_cond_broadcast(&w->cv);
  mp_plat_mutex_unlock(&w->mu);
}

/* ---- answering --------------------------------------------------------------------------- */

/* Answers the tasks so far (RPUSH to their master) and removes ents[from..to) from the
 * stream: one round trip. */
static int flush(wk *w, size_t from, size_t to) {
  size_t n = w->nout, nids = to - from;
  const char **argv = malloc((n + nids + 4) * sizeof *argv);
  size_t *lens = malloc((n + nids + 4) * sizeof *lens);
  int rc = argv && lens ? 0 : mp_set_error(MP_ENOMEM, "redis worker: out of memory");
  int sent = 0;
  if (rc == 0 && n > 0) {
    argv[0] = "RPUSH";
    lens[0] = 5;
    argv[1] = w->key;
    lens[1] = strlen(w->key);
    for (size_t i = 0; i < n; i++) {
      size_t start = i ? w->ends[i - 1] : 0;
      argv[2 + i] = (const char *)w->out.data + start;
      lens[2 + i] = w->ends[i] - start;
    }
    rc = mp__redis_send(w->r, (int)n + 2, argv, lens);
    const char *ex[3] = {"PEXPIRE", w->key, MP__RP_RES_TTL};
    size_t exl[3] = {7, strlen(w->key), strlen(MP__RP_RES_TTL)};
    rc = rc ? rc : mp__redis_send(w->r, 3, ex, exl);
    sent += 2;
  }
  for (int cmd = 0; rc == 0 && nids > 0 && cmd < 2; cmd++) {
    int k = 0;
    argv[k] = cmd ? "XDEL" : "XACK";
    lens[k++] = 4;
    argv[k] = w->k_tasks;
    lens[k++] = strlen(w->k_tasks);
    if (!cmd) {
      argv[k] = MP__RP_GROUP;
      lens[k++] = strlen(MP__RP_GROUP);
    }
    for (size_t i = from; i < to; i++) {
      argv[k] = w->ents[i].id;
      lens[k++] = strlen(w->ents[i].id);
    }
    rc = mp__redis_send(w->r, k, argv, lens);
    sent++;
  }
  for (int i = 0; rc == 0 && i < sent; i++) {
    redisReply *reply = NULL;
    rc = mp__redis_recv(w->r, 0, &reply);
    if (rc == 0 && reply->type == REDIS_REPLY_ERROR)
      rc = mp__redis_reply_error(w->r, reply, "answering");
    mp__redis_reply_free(reply);
  }
  free(argv);
  free(lens);
  w->out.len = 0;
  w->nout = 0;
  return rc;
}

/* The function of a task's reference, resolved once per reference. */
static const fncache *function(wk *w, const mp_plat_target *t) {
  for (int i = 0; i < FN_CACHE; i++)
    if (w->fns[i].used && memcmp(&w->fns[i].t, t, sizeof *t) == 0)
      return &w->fns[i];
  fncache *f = &w->fns[w->next_fn++ % FN_CACHE];
  memset(f, 0, sizeof *f);
  f->t = *t;
  f->used = 1;
  mp_plat_target copy = *t;
  if (mp_plat_target_resolve(&copy, &f->fn) < 0) {
    f->fn = NULL;
    snprintf(f->error, sizeof f->error, "worker %s refused the task: %s", w->name, mp_last_error());
  }
  return f;
}

/* Runs one entry's task, appending its answer to w->out: 0, or an error of this worker
 * (no memory, a lost connection); a malformed task is answered if it can be, else dropped. */
static int run_entry(wk *w, size_t i, size_t *from) {
  mp__rentry *e = &w->ents[i];
  if (e->status != 0)
    return 0; /* deleted, or not ours to read: removed with the batch */
  mp__reader r = {e->data, e->len, 0};
  mp__rp_task t;
  int bad = mp__rp_read_task(&r, &t);
  if (t.key == NULL)
    return 0; /* nobody to answer */
  if (w->nout > 0 && (strlen(w->key) != t.klen || memcmp(w->key, t.key, t.klen) != 0)) {
    int rc = flush(w, *from, i); /* another master's: its own RPUSH */
    *from = i;
    if (rc < 0)
      return rc;
  }
  memcpy(w->key, t.key, t.klen);
  w->key[t.klen] = '\0';
  size_t at = w->out.len;
  int rc = 0;
  if (bad < 0) {
    rc = mp__rp_put_fail(&w->out, t.id, MP_EPROTO, mp_last_error());
  } else {
    const fncache *f = function(w, &t.target);
    if (f->fn == NULL) {
      rc = mp__rp_put_fail(&w->out, t.id, MP_ECHILD, f->error);
    } else {
      rc = mp__buf_put_u8(&w->out, MP__RP_RESULT);
      rc = rc ? rc : mp__buf_put_u64(&w->out, t.id);
      rc = rc ? rc : mp__buf_put_u32(&w->out, t.n);
      rc = rc ? rc : mp__pw_run_items(f->fn, f->error, t.flags, t.n, &r, &w->out);
      if (rc < 0 && rc != MP_ENOMEM) { /* an input that does not decode */
        char why[512];
        snprintf(why, sizeof why, "worker %s: %s", w->name, mp_last_error());
        w->out.len = at;
        rc = mp__rp_put_fail(&w->out, t.id, MP_EPROTO, why);
      }
    }
  }
  if (rc < 0)
    return rc;
  w->ends[w->nout++] = w->out.len;
  return 0;
}

/* Takes up to w->batch tasks (waiting up to idle_exit_ms, or forever) into ents; *n says
 * how many. */
static int take(wk *w, size_t *n) {
  size_t count = w->batch;
  if (w->max_tasks && w->max_tasks - w->done < count)
    count = (size_t)(w->max_tasks - w->done);
  char cnt[24], block[24];
  snprintf(cnt, sizeof cnt, "%zu", count);
  snprintf(block, sizeof block, "%d", w->idle_exit_ms);
  const char *argv[10] = {"XREADGROUP", "GROUP", MP__RP_GROUP, w->name,   "COUNT",
                          cnt,          "BLOCK", block,        "STREAMS", w->k_tasks};
  const char *all[12];
  size_t lens[12];
  for (int i = 0; i < 10; i++)
    all[i] = argv[i];
  all[10] = ">";
  for (int i = 0; i < 11; i++)
    lens[i] = strlen(all[i]);
  *n = 0;
  redisReply *reply = NULL;
  int rc = mp__redis_send(w->r, 11, all, lens);
  rc = rc ? rc : mp__redis_recv(w->r, w->idle_exit_ms ? w->idle_exit_ms : MP_FOREVER, &reply);
  if (rc == 0 && reply->type == REDIS_REPLY_ERROR) {
    rc = mp__redis_reply_error(w->r, reply, "XREADGROUP");
    if (mp__redis_reply_is(reply, "NOGROUP"))
      mp__redis_drop(w->r); /* Redis lost the group: reconnecting makes it again */
  }
  rc = rc ? rc
          : mp__redis_read_entries(reply, w->k_tasks, NULL, MP_CONN_DEFAULT_MAX_MESSAGE, w->ents,
                                   count, n);
  mp__redis_reply_free(reply);
  return rc;
}

/* The lease the held tasks ask for: the shortest (bounded below). */
static uint32_t lease_of(wk *w, size_t n) {
  uint32_t lease = 0;
  for (size_t i = 0; i < n; i++) {
    mp__reader r = {w->ents[i].data, w->ents[i].data ? w->ents[i].len : 0, 0};
    mp__rp_task t;
    if (w->ents[i].status == 0 && mp__rp_read_task(&r, &t) == 0 && t.lease_ms &&
        (lease == 0 || t.lease_ms < lease))
      lease = t.lease_ms;
  }
  return lease < 100 ? 100 : lease;
}

static int serve(wk *w) {
  for (;;) {
    if (w->max_tasks && w->done >= w->max_tasks)
      return 0;
    size_t n = 0;
    int rc = mp__redis_ensure(w->r, -1); /* MP_EBROKEN: unreachable for reconnect_ms */
    if (rc < 0)
      return rc;
    rc = take(w, &n);
    if (rc == MP_EBROKEN || rc == MP_EPROTO)
      continue; /* a lost connection or a bad reply: the next take reconnects */
    if (rc < 0)
      return rc;
    if (n == 0 && w->idle_exit_ms)
      return 0;
    hold(w, n, lease_of(w, n));
    size_t from = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
      rc = run_entry(w, i, &from);
    rc = rc ? rc : flush(w, from, n);
    hold(w, 0, 0);
    for (size_t i = 0; i < n; i++)
      mp__rentry_clear(&w->ents[i]);
    w->done += n;
    if (rc < 0 && rc != MP_EBROKEN)
      return rc; /* lost answers: the masters run those tasks again */
  }
}

static int check_name(const char *s) {
  if (s == NULL)
    return 0;
  size_t n = strlen(s);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= ' ' || s[i] == '{' || s[i] == '}' || s[i] == 0x7f)
      n = 0;
  return n > 0 && n <= 100 ? 0
                           : mp_set_error(MP_EINVAL, "mp_worker_serve: the worker name must be "
                                                     "1 to 100 printable bytes without spaces");
}

static int setup(wk *w, const char *url, const char *name, const mp_worker_opts *o) {
  w->batch = o->batch ? o->batch : 16;
  if (w->batch > MP_REDIS_MAX_PREFETCH)
    w->batch = MP_REDIS_MAX_PREFETCH;
  w->max_tasks = o->max_tasks;
  w->idle_exit_ms = o->idle_exit_ms > 0 ? o->idle_exit_ms : 0;
  int rc = check_name(o->worker);
  if (rc == 0 && o->worker)
    snprintf(w->name, sizeof w->name, "%s", o->worker);
  else if (rc == 0) {
    unsigned char rnd[3];
    rc = mp_plat_random_bytes(rnd, sizeof rnd);
    snprintf(w->name, sizeof w->name, "worker-%lld-%02x%02x%02x", (long long)mp_getpid(), rnd[0],
             rnd[1], rnd[2]);
  }
  rc = rc ? rc : mp__rp_key(w->k_tasks, sizeof w->k_tasks, name, "tasks");
  mp__redis_cfg cfg;
  mp__rp_cfg(&cfg, o->connect_timeout_ms, o->io_timeout_ms, o->reconnect_ms, o->tls_ca_file);
  cfg.on_connect = on_connect;
  cfg.arg = w;
  rc = rc ? rc : mp__redis_create(&w->r, url, &cfg);
  cfg.on_connect = NULL;
  rc = rc ? rc : mp__redis_create(&w->hb, url, &cfg);
  rc = rc ? rc : mp__redis_ensure(w->r, -1);
  return rc ? rc : mp_thread_create(&w->thread, heartbeat, w, "WorkerHeartbeat");
}

int mp_worker_serve(const char *url, const char *name, const mp_worker_opts *opts) {
  mp_worker_opts none;
  memset(&none, 0, sizeof none);
  const mp_worker_opts *o = opts ? opts : &none;
  if (url == NULL || name == NULL)
    return mp_set_error(MP_EINVAL, "mp_worker_serve: url or name is NULL");
  wk *w = calloc(1, sizeof *w);
  if (w == NULL)
    return mp_set_error(MP_ENOMEM, "mp_worker_serve: out of memory");
  mp_plat_mutex_init(&w->mu);
  mp_plat_cond_init(&w->cv);
  int rc = setup(w, url, name, o);
  rc = rc ? mp__redis_amend(rc, "mp_worker_serve: ", "") : serve(w);
  if (w->thread) {
    mp_plat_mutex_lock(&w->mu);
    w->stop = 1;
    mp_plat_cond_broadcast(&w->cv);
    mp_plat_mutex_unlock(&w->mu);
    mp_thread_join(w->thread, MP_FOREVER);
    mp_thread_free(w->thread);
  }
  char msg[512];
  snprintf(msg, sizeof msg, "%s", mp_last_error());
  mp__redis_free(w->r);
  mp__redis_free(w->hb);
  mp__buf_free(&w->out);
  mp_plat_cond_destroy(&w->cv);
  mp_plat_mutex_destroy(&w->mu);
  free(w);
  return rc < 0 ? mp_set_error(rc, "%s", msg) : 0;
}
