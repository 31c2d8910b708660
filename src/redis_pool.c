/* A pool whose workers are elsewhere: the master of mp_redis_pool_create, behind the same
 * public calls as the local pool (pool.c). Its thread takes the queued tasks in batches
 * and adds them to the pool's stream with pipelined XADDs; a collector thread takes the
 * answers from this master's list (BLMPOP, many at once), hands them to their jobs, and
 * every lease_ms / 2 runs the reclaim script, which puts the tasks of silent (dead)
 * workers back in the stream or, after `attempts` deaths, answers them with MP_EWORKER.
 * A table of the tasks in flight, by id, gives each answer to its caller once: a second
 * answer of a task that ran twice finds nothing and is dropped. A lost connection (a Redis
 * restart) costs nothing: unconfirmed XADDs go again, and the collector, reconnected,
 * recovers answers a lost reply took with it (recover_lua). Formats: redis_pool.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "pool.h"
#include "pool_wire.h"
#include "redis.h"
#include "redis_pool.h"

#define BATCH 256     /* tasks per pipelined XADD round */
#define ANSWERS "512" /* answers per BLMPOP */
#define RECLAIM_COUNT "100"

/* KEYS[1] the tasks stream. ARGV: lease_ms, attempts, count. Entries idle longer than the
 * lease belong to a dead worker (live ones refresh theirs): each is removed and added
 * again for another worker, or answered with MP_EWORKER (-15) once it has had its runs. */
static const char reclaim_lua[] =
    "local p = redis.call('XPENDING', KEYS[1], 'w', 'IDLE', ARGV[1], '-', '+', ARGV[3])\n"
    "for _, e in ipairs(p) do\n"
    "  local id, who = e[1], e[2]\n"
    "  local r = redis.call('XRANGE', KEYS[1], id, id)\n"
    "  redis.call('XACK', KEYS[1], 'w', id)\n"
    "  redis.call('XDEL', KEYS[1], id)\n"
    "  if r[1] then\n"
    "    local f, d, a, w = r[1][2], nil, 0, ''\n"
    "    for i = 1, #f - 1, 2 do\n"
    "      if f[i] == 'd' then d = f[i + 1] elseif f[i] == 'a' then a = tonumber(f[i + 1]) or 0\n"
    "      elseif f[i] == 'w' then w = f[i + 1] end\n"
    "    end\n"
    "    if d and #d >= 11 then\n"
    "      a = a + 1\n"
    "      if w == '' then w = who else w = w .. ', ' .. who end\n"
    "      if a >= tonumber(ARGV[2]) then\n"
    "        local kl = d:byte(10) * 256 + d:byte(11)\n"
    "        local msg = 'worker ' .. who .. ' died (silent for ' .. ARGV[1] ..\n"
    "          ' ms) while it held this task; it ran ' .. a .. ' time(s), on: ' .. w\n"
    "        redis.call('RPUSH', d:sub(12, 11 + kl), 'F' .. d:sub(2, 9) .. '\\255\\255\\255\\241' "
    ".. msg)\n"
    "      else\n"
    "        redis.call('XADD', KEYS[1], '*', 'd', d, 'a', a, 'w', w)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return #p\n";

/* KEYS[1] the tasks stream, KEYS[2] this master's answers; ARGV: stream ids of tasks in
 * flight. Run after the collector reconnects: a BLMPOP whose reply the lost connection
 * swallowed took answers out of the list for good. Atomically takes the answers waiting and
 * says which ids left the stream: a task whose entry is gone was answered (its worker
 * pushes the answer before it deletes the entry), so if its answer is not among these nor
 * came before, it was lost, and the task must run again (an entry that a reclaim moved
 * counts as gone too: that task runs once more, and is answered once). */
static const char recover_lua[] =
    "local a = redis.call('LRANGE', KEYS[2], 0, -1)\n"
    "redis.call('DEL', KEYS[2])\n"
    "local gone = {}\n"
    "for i, id in ipairs(ARGV) do\n"
    "  if #redis.call('XRANGE', KEYS[1], id, id) == 0 then gone[#gone + 1] = i end\n"
    "end\n"
    "return {a, gone}\n";

#define RECOVER_BATCH 1000 /* ids per recovery script */

typedef struct slot {
  uint64_t id; /* the task's id on the wire, key_of(t); 0: empty */
  mp__task *t;
  char sid[MP_REDIS_ID_MAX]; /* its stream entry, once Redis said it */
} slot;

typedef struct mp__rpool mp__rpool;
struct mp__rpool {
  mp_pool *p;
  mp__redis *tx, *rx; /* the master thread's, the collector's */
  char k_tasks[MP_REDIS_NAME_MAX + 32], k_res[MP_REDIS_NAME_MAX + 64];
  char sha[41];
  int lease_ms, attempts, reconnect_ms;
  /* tasks in flight, by id (open addressing); guarded by the pool's lock */
  slot *tab;
  size_t cap, count;
  int stop; /* the collector ends; under the pool's lock */
  mp_thread *collector;
  mp__buf batch; /* the master thread's: bodies of one round */
  size_t ends[BATCH];
  uint64_t ids[BATCH];
};

/* A task's id on the wire: the pool's numbers start at 0, the table's empty slot. */
static uint64_t key_of(const mp__task *t) { return t->id + 1; }

static int oom(void) { return mp_set_error(MP_ENOMEM, "redis pool: out of memory"); }

/* ---- the table of tasks in flight (the pool's lock held) --------------------------------- */

static size_t hash(uint64_t id, size_t cap) {
  return (size_t)(id * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

static slot *find_locked(mp__rpool *rp, uint64_t id) {
  for (size_t i = hash(id, rp->cap);; i = (i + 1) & (rp->cap - 1)) {
    if (rp->tab[i].id == id)
      return &rp->tab[i];
    if (rp->tab[i].id == 0)
      return NULL;
  }
}

static int grow_locked(mp__rpool *rp) {
  size_t cap = rp->cap ? rp->cap * 2 : 1024;
  slot *tab = calloc(cap, sizeof *tab);
  if (tab == NULL)
    return oom();
  for (size_t i = 0; i < rp->cap; i++)
    if (rp->tab[i].id) {
      size_t j = hash(rp->tab[i].id, cap);
      while (tab[j].id)
        j = (j + 1) & (cap - 1);
      tab[j] = rp->tab[i];
    }
  free(rp->tab);
  rp->tab = tab;
  rp->cap = cap;
  return 0;
}

static int insert_locked(mp__rpool *rp, mp__task *t) {
  if ((rp->count + 1) * 2 > rp->cap && grow_locked(rp) < 0)
    return MP_ENOMEM;
  size_t i = hash(key_of(t), rp->cap);
  while (rp->tab[i].id)
    i = (i + 1) & (rp->cap - 1);
  rp->tab[i].id = key_of(t);
  rp->tab[i].t = t;
  rp->tab[i].sid[0] = '\0';
  rp->count++;
  return 0;
}

/* Removes s, shifting back the entries of its run so that lookups still find them. */
static mp__task *remove_locked(mp__rpool *rp, slot *s) {
  mp__task *t = s->t;
  size_t i = (size_t)(s - rp->tab), mask = rp->cap - 1;
  for (size_t j = (i + 1) & mask; rp->tab[j].id; j = (j + 1) & mask) {
    size_t home = hash(rp->tab[j].id, rp->cap);
    if (((j - home) & mask) >= ((j - i) & mask)) { /* j may move back to i */
      rp->tab[i] = rp->tab[j];
      i = j;
    }
  }
  memset(&rp->tab[i], 0, sizeof rp->tab[i]);
  rp->count--;
  return t;
}

/* Takes task id out of the table: NULL if it is not (or no longer) in flight. */
static mp__task *take(mp__rpool *rp, uint64_t id) {
  mp__pool_lock(rp->p);
  slot *s = id ? find_locked(rp, id) : NULL;
  mp__task *t = s ? remove_locked(rp, s) : NULL;
  /* the last answer of a closed pool: its master may end */
  if (t && rp->count == 0 && rp->p->pend_head == NULL)
    mp__pool_wake_locked(rp->p);
  mp__pool_unlock(rp->p);
  return t;
}

/* ---- connections ------------------------------------------------------------------------- */

static int on_connect(mp__redis *r, void *arg) {
  mp__rpool *rp = arg;
  redisReply *reply = NULL;
  int rc = mp__rp_make_group(r, rp->k_tasks);
  const char *load[3] = {"SCRIPT", "LOAD", reclaim_lua};
  size_t ll[3] = {6, 4, strlen(reclaim_lua)};
  rc = rc ? rc : mp__redis_call(r, 3, load, ll, &reply);
  if (rc == 0 && (reply->type != REDIS_REPLY_STRING || reply->len != 40))
    rc = mp_set_error(MP_EPROTO, "%s: SCRIPT LOAD gave no SHA1", mp__redis_where(r));
  if (rc == 0)
    memcpy(rp->sha, reply->str, 40);
  mp__redis_reply_free(reply);
  return rc;
}

static int64_t after_ms(int ms) { return (int64_t)mp_plat_monotonic_ns() + (int64_t)ms * 1000000; }

/* ---- the collector: answers in, dead workers' tasks back out ------------------------------ */

static void fail_one(mp__task *t, int code, const char *msg, size_t len) {
  char m[MP__RP_MSG_MAX + 64];
  snprintf(m, sizeof m, "task %llu: %.*s", (unsigned long long)t->id, (int)len, msg);
  t->next = NULL;
  mp__fail_tasks(t, code, m);
}

static void on_answer(mp__rpool *rp, const redisReply *e) {
  mp__rp_answer a;
  if (e->type != REDIS_REPLY_STRING || mp__rp_read_answer(e->str, e->len, &a) < 0 || a.kind == 0)
    return; /* a wake-up, or garbage in our list: nobody's answer */
  mp__task *t = take(rp, a.id);
  if (t == NULL)
    return; /* answered already: the task ran twice */
  if (a.kind == MP__RP_FAIL) {
    fail_one(t, a.code, a.msg, a.msg_len);
    return;
  }
  if (a.n != t->count) {
    const char *m = "a worker answered with the wrong number of results";
    fail_one(t, MP_EPROTO, m, strlen(m));
    return;
  }
  mp__job *j = t->j;
  size_t first = t->first, count = t->count;
  mp__task_free(t); /* before the record that may end the job */
  mp__job_answer(j, first, count, &a.items);
}

/* A BLMPOP reply: nil, or [key, [answers...]]. */
static void on_answers(mp__rpool *rp, const redisReply *reply) {
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
      reply->element[1]->type != REDIS_REPLY_ARRAY)
    return;
  const redisReply *list = reply->element[1];
  for (size_t i = 0; i < list->elements; i++)
    on_answer(rp, list->element[i]);
}

/* Fails every task in flight (Redis is gone for longer than reconnect_ms, or terminate). */
static void fail_in_flight(mp__rpool *rp, int code, const char *msg) {
  mp__task *list = NULL;
  mp__pool_lock(rp->p);
  for (size_t i = 0; i < rp->cap; i++)
    if (rp->tab[i].id) {
      rp->tab[i].t->next = list;
      list = rp->tab[i].t;
    }
  if (rp->tab)
    memset(rp->tab, 0, rp->cap * sizeof *rp->tab);
  rp->count = 0;
  mp__pool_unlock(rp->p);
  mp__fail_tasks(list, code, msg);
}

static void reclaim(mp__rpool *rp) {
  char lease[16], attempts[16];
  snprintf(lease, sizeof lease, "%d", rp->lease_ms);
  snprintf(attempts, sizeof attempts, "%d", rp->attempts);
  const char *argv[7] = {"EVALSHA", rp->sha, "1", rp->k_tasks, lease, attempts, RECLAIM_COUNT};
  size_t lens[7];
  for (int i = 0; i < 7; i++)
    lens[i] = strlen(argv[i]);
  redisReply *reply = NULL;
  if (mp__redis_call(rp->rx, 7, argv, lens, &reply) < 0 && strstr(mp_last_error(), "NOSCRIPT"))
    mp__redis_drop(rp->rx);    /* a restarted Redis forgot the script: reconnecting loads it */
  mp__redis_reply_free(reply); /* any other failure: the next round tries again */
}

static int stopping(mp__rpool *rp) {
  mp__pool_lock(rp->p);
  int stop = rp->stop;
  mp__pool_unlock(rp->p);
  return stop;
}

/* Fails task id (in the table) with the error just set. */
static void fail_unqueued(mp__rpool *rp, uint64_t id, int code) {
  mp__task *t = take(rp, id);
  if (t) {
    char msg[MP__POOL_MSG_MAX];
    snprintf(msg, sizeof msg, "redis pool: the task could not be queued: %s", mp_last_error());
    fail_one(t, code, msg, strlen(msg));
  }
}

/* Appends task t's entry (our head, then its encoded body) to b. */
static int put_task_locked(mp__rpool *rp, mp__task *t, mp__buf *b) {
  /* t->body is 'T', fnid u32, then flags, n and the inputs: those follow our head */
  int rc = mp__rp_put_task_head(b, key_of(t), rp->k_res, (uint32_t)rp->lease_ms,
                                &rp->p->fns[t->fnid].ref, t->flags, (uint32_t)t->count);
  return rc ? rc : mp__buf_put(b, t->body + 10, t->len - 10);
}

/* Notes the stream entry an XADD's reply names for task id, if it is still in flight. */
static void set_sid(mp__rpool *rp, uint64_t id, const redisReply *reply) {
  if (reply->type != REDIS_REPLY_STRING || reply->len >= MP_REDIS_ID_MAX)
    return;
  mp__pool_lock(rp->p);
  slot *s = find_locked(rp, id);
  if (s)
    memcpy(s->sid, reply->str, reply->len + 1);
  mp__pool_unlock(rp->p);
}

/* Adds task id (in the table, with entry sid) to the stream again: its answer was lost. */
static void resend(mp__rpool *rp, uint64_t id, const char *sid, mp__buf *b) {
  mp__pool_lock(rp->p);
  slot *s = find_locked(rp, id);
  int rc = s && strcmp(s->sid, sid) == 0 ? 0 : 1; /* answered, or added again already */
  b->len = 0;
  rc = rc ? rc : put_task_locked(rp, s->t, b);
  mp__pool_unlock(rp->p);
  redisReply *reply = NULL;
  const char *argv[5] = {"XADD", rp->k_tasks, "*", "d", (const char *)b->data};
  size_t lens[5] = {4, strlen(rp->k_tasks), 1, 1, b->len};
  rc = rc ? rc : mp__redis_call(rp->rx, 5, argv, lens, &reply);
  if (rc == 0)
    set_sid(rp, id, reply);
  else if (rc < 0 && mp__redis_connected(rp->rx)) /* refused (no memory...): it fails */
    fail_unqueued(rp, id, rc);
  mp__redis_reply_free(reply); /* the connection lost: the next one recovers it */
}

/* One recovery script over ids[0..n) (their entries sids): the answers it took are given,
 * then the tasks whose entries are gone and that are still unanswered go again. */
static int recover_some(mp__rpool *rp, const uint64_t *ids, char (*sids)[MP_REDIS_ID_MAX], size_t n,
                        mp__buf *b) {
  const char **argv = malloc((n + 5) * sizeof *argv);
  size_t *lens = malloc((n + 5) * sizeof *lens);
  redisReply *reply = NULL;
  int rc = argv && lens ? 0 : oom();
  if (rc == 0) {
    const char *head[5] = {"EVAL", recover_lua, "2", rp->k_tasks, rp->k_res};
    for (size_t i = 0; i < n + 5; i++) {
      argv[i] = i < 5 ? head[i] : sids[i - 5];
      lens[i] = strlen(argv[i]);
    }
    rc = mp__redis_call(rp->rx, (int)n + 5, argv, lens, &reply);
  }
  if (rc == 0 && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
      reply->element[0]->type == REDIS_REPLY_ARRAY &&
      reply->element[1]->type == REDIS_REPLY_ARRAY) {
    const redisReply *answers = reply->element[0], *gone = reply->element[1];
    for (size_t i = 0; i < answers->elements; i++)
      on_answer(rp, answers->element[i]);
    for (size_t i = 0; i < gone->elements; i++) {
      long long k = gone->element[i]->type == REDIS_REPLY_INTEGER ? gone->element[i]->integer : 0;
      if (k >= 1 && (size_t)k <= n)
        resend(rp, ids[k - 1], sids[k - 1], b);
    }
  }
  mp__redis_reply_free(reply);
  free(argv);
  free(lens);
  return rc;
}

/* After the collector's connection came back: recovers the answers a lost BLMPOP reply took
 * with it (recover_lua), for the tasks in flight that Redis had taken (a snapshot: answers
 * move the table's entries), RECOVER_BATCH at a time. */
static void recover(mp__rpool *rp) {
  mp__pool_lock(rp->p);
  size_t n = 0, cap = rp->count;
  uint64_t *ids = malloc((cap ? cap : 1) * sizeof *ids);
  char(*sids)[MP_REDIS_ID_MAX] = malloc((cap ? cap : 1) * sizeof *sids);
  for (size_t i = 0; ids && sids && i < rp->cap; i++)
    if (rp->tab[i].id && rp->tab[i].sid[0]) {
      ids[n] = rp->tab[i].id;
      memcpy(sids[n++], rp->tab[i].sid, MP_REDIS_ID_MAX);
    }
  mp__pool_unlock(rp->p);
  mp__buf b = {0};
  /* a lost connection stops it: the next one recovers again (a new epoch) */
  int rc = ids && sids ? 0 : oom();
  for (size_t at = 0; rc == 0 && at < n; at += RECOVER_BATCH)
    rc = recover_some(rp, ids + at, sids + at, n - at < RECOVER_BATCH ? n - at : RECOVER_BATCH, &b);
  mp__buf_free(&b);
  free(ids);
  free(sids);
}

static void collector(void *arg) {
  mp__rpool *rp = arg;
  int half = rp->lease_ms / 2;
  char wait_s[32];
  snprintf(wait_s, sizeof wait_s, "%d.%03d", half / 1000, half % 1000);
  const char *argv[7] = {"BLMPOP", wait_s, "1", rp->k_res, "LEFT", "COUNT", ANSWERS};
  size_t lens[7];
  for (int i = 0; i < 7; i++)
    lens[i] = strlen(argv[i]);
  int64_t next_reclaim = after_ms(half);
  uint64_t epoch = mp__redis_epoch(rp->rx); /* connected by pool_thread */
  while (!stopping(rp)) {
    int rc = mp__redis_ensure(rp->rx, -1);
    if (rc < 0) {
      char msg[MP__POOL_MSG_MAX];
      snprintf(msg, sizeof msg, "redis pool: %s", mp_last_error());
      fail_in_flight(rp, rc, msg);
      continue; /* what comes next tries again */
    }
    if (mp__redis_epoch(rp->rx) != epoch) { /* a new connection: answers may have been lost */
      epoch = mp__redis_epoch(rp->rx);
      recover(rp); /* lost again: the next connection recovers */
    }
    redisReply *reply = NULL;
    rc = mp__redis_send(rp->rx, 7, argv, lens);
    rc = rc ? rc : mp__redis_recv(rp->rx, half, &reply);
    if (rc == 0)
      on_answers(rp, reply);
    mp__redis_reply_free(reply);
    mp__pool_lock(rp->p);
    int busy = rp->count > 0;
    mp__pool_unlock(rp->p);
    if (busy && (int64_t)mp_plat_monotonic_ns() >= next_reclaim) {
      reclaim(rp);
      next_reclaim = after_ms(half);
    }
  }
}

/* ---- the master thread: tasks out ------------------------------------------------------ */

/* Builds the bodies of up to BATCH queued tasks into rp->batch and puts the tasks in the
 * table (before Redis has them: an answer may beat the XADD's reply). */
static size_t take_batch_locked(mp__rpool *rp, mp__task **bad) {
  mp_pool *p = rp->p;
  size_t n = 0;
  rp->batch.len = 0;
  while (p->pend_head && n < BATCH) {
    mp__task *t = p->pend_head;
    p->pend_head = t->next;
    if (p->pend_head == NULL)
      p->pend_tail = NULL;
    p->npending--;
    t->next = NULL;
    size_t at = rp->batch.len;
    int rc = t->body ? 0 : mp__task_encode(t, &p->scratch);
    rc = rc ? rc : put_task_locked(rp, t, &rp->batch);
    rc = rc ? rc : insert_locked(rp, t);
    if (rc < 0) {
      rp->batch.len = at;
      snprintf(p->unsendable_msg, sizeof p->unsendable_msg,
               "redis pool: task %llu could not be encoded: %s", (unsigned long long)t->id,
               mp_last_error());
      t->next = *bad;
      *bad = t;
      continue;
    }
    rp->ids[n] = key_of(t);
    rp->ends[n++] = rp->batch.len;
  }
  return n;
}

/* One pipelined round of XADDs for batch tasks [from, n): how many of them are settled
 * (queued, or refused by Redis and failed), in order; *rc is the connection's error that
 * stopped the round (0: none). */
static size_t send_round(mp__rpool *rp, size_t from, size_t n, int *rc) {
  size_t sent = from;
  for (*rc = 0; *rc == 0 && sent < n; sent++) {
    size_t start = sent ? rp->ends[sent - 1] : 0;
    const char *argv[5] = {"XADD", rp->k_tasks, "*", "d", (const char *)rp->batch.data + start};
    size_t lens[5] = {4, strlen(rp->k_tasks), 1, 1, rp->ends[sent] - start};
    *rc = mp__redis_send(rp->tx, 5, argv, lens);
  }
  size_t i = from;
  for (; *rc == 0 && i < sent; i++) {
    redisReply *reply = NULL;
    *rc = mp__redis_recv(rp->tx, 0, &reply);
    if (*rc < 0)
      break; /* its reply is lost with the connection: unsettled */
    int r = mp__redis_reply_error(rp->tx, reply, "XADD");
    if (r == 0)
      set_sid(rp, rp->ids[i], reply);
    mp__redis_reply_free(reply);
    if (r < 0)
      fail_unqueued(rp, rp->ids[i], r);
  }
  return i;
}

/* XADDs the batch, pipelined: one round trip. A task Redis refused fails. When the
 * connection breaks (a Redis restart), the tasks whose XADD Redis did not confirm go again
 * on a new connection: one Redis did run then sits in the stream twice, runs twice and is
 * answered once (the table). Redis unreachable for reconnect_ms: they fail. */
static void send_batch(mp__rpool *rp, size_t n) {
  size_t done = 0;
  int64_t deadline = -1; /* from the first break: reconnect_ms to get a connection that holds */
  while (done < n) {
    int rc = mp__redis_ensure(rp->tx, deadline), broke = 0; /* ensure's failure is final */
    if (rc == 0) {
      done = send_round(rp, done, n, &rc);
      broke = rc == MP_EBROKEN;
    }
    if (rc == 0)
      continue;
    if (broke && deadline < 0)
      deadline = after_ms(rp->reconnect_ms);
    if (broke && (int64_t)mp_plat_monotonic_ns() < deadline)
      continue;
    for (; done < n; done++)
      fail_unqueued(rp, rp->ids[done], rc);
  }
}

/* Removes this master's unanswered tasks and answers from Redis (terminate, or the end). */
static void clean_up(mp__rpool *rp) {
  if (mp__redis_ensure(rp->tx, after_ms(rp->lease_ms)) < 0)
    return;
  mp__pool_lock(rp->p);
  for (size_t i = 0; i < rp->cap; i++)
    if (rp->tab[i].id && rp->tab[i].sid[0]) {
      const char *argv[3] = {"XDEL", rp->k_tasks, rp->tab[i].sid};
      size_t lens[3] = {4, strlen(rp->k_tasks), strlen(rp->tab[i].sid)};
      mp__redis_send(rp->tx, 3, argv, lens);
    }
  mp__pool_unlock(rp->p);
  const char *argv[2] = {"DEL", rp->k_res};
  size_t lens[2] = {3, strlen(rp->k_res)};
  redisReply *reply = NULL;
  mp__redis_call(rp->tx, 2, argv, lens, &reply);
  mp__redis_reply_free(reply);
}

/* Wakes the collector from its BLMPOP: an empty answer in its own list. */
static void wake_collector(mp__rpool *rp) {
  const char *argv[3] = {"LPUSH", rp->k_res, ""};
  size_t lens[3] = {5, strlen(rp->k_res), 0};
  redisReply *reply = NULL;
  if (mp__redis_ensure(rp->tx, after_ms(rp->lease_ms)) == 0)
    mp__redis_call(rp->tx, 3, argv, lens, &reply);
  mp__redis_reply_free(reply);
}

static void run(mp__rpool *rp) {
  mp_pool *p = rp->p;
  for (;;) {
    mp__task *bad = NULL;
    char msg[MP__POOL_MSG_MAX];
    mp__pool_lock(p);
    int term = p->state == MP__POOL_TERMINATING;
    size_t n = term ? 0 : take_batch_locked(rp, &bad);
    int done = p->state == MP__POOL_CLOSED && p->pend_head == NULL && rp->count == 0;
    snprintf(msg, sizeof msg, "%s", p->unsendable_msg);
    mp__pool_unlock(p);
    mp__fail_tasks(bad, MP_EINVAL, msg);
    if (term || (done && n == 0))
      return;
    if (n > 0) {
      send_batch(rp, n);
      continue;
    }
    mp_waitable w = mp_waitable_conn(p->wake_r);
    if (mp_wait(&w, 1, MP_FOREVER) > 0)
      mp__pool_drain_wake(p);
  }
}

static void pool_thread(void *arg) {
  mp_pool *p = arg;
  mp__rpool *rp = p->remote;
  rp->p = p;
  int rc = mp__redis_ensure(rp->tx, -1);
  rc = rc ? rc : mp__redis_ensure(rp->rx, -1);
  rc = rc ? rc : mp_thread_create(&rp->collector, collector, rp, "PoolCollector");
  mp__pool_started(p, rc);
  if (rc < 0)
    return;
  run(rp);
  mp__pool_lock(p);
  rp->stop = 1;
  mp__pool_unlock(p);
  wake_collector(rp);
  mp_thread_join(rp->collector, MP_FOREVER);
  clean_up(rp);
  fail_in_flight(rp, MP_ECANCELED, "the pool was terminated");
  mp__pool_lock(p);
  mp__task *t = p->pend_head;
  p->pend_head = p->pend_tail = NULL;
  p->npending = 0;
  mp__pool_unlock(p);
  mp__fail_tasks(t, MP_ECANCELED, "the pool was terminated");
  mp__pool_lock(p);
  p->done = 1;
  mp_plat_cond_broadcast(&p->cv);
  mp__pool_unlock(p);
}

static void rpool_free(mp__rpool *rp) {
  mp_thread_free(rp->collector);
  mp__redis_free(rp->tx);
  mp__redis_free(rp->rx);
  mp__buf_free(&rp->batch);
  free(rp->tab);
  free(rp);
}

static int rpool_new(mp__rpool **out, const char *url, const char *name,
                     const mp_redis_pool_opts *o) {
  mp__rpool *rp = calloc(1, sizeof *rp);
  if (rp == NULL)
    return oom();
  rp->lease_ms = o->lease_ms > 0 ? (o->lease_ms < 100 ? 100 : o->lease_ms) : 10000;
  rp->attempts = o->attempts > 0 ? o->attempts : 3;
  rp->reconnect_ms = o->reconnect_ms > 0 ? o->reconnect_ms : 30000;
  unsigned char rnd[8];
  char suffix[40];
  int rc = mp_plat_random_bytes(rnd, sizeof rnd);
  snprintf(suffix, sizeof suffix, "res:%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
           rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
  rc = rc ? rc : mp__rp_key(rp->k_tasks, sizeof rp->k_tasks, name, "tasks");
  rc = rc ? rc : mp__rp_key(rp->k_res, sizeof rp->k_res, name, suffix);
  mp__redis_cfg cfg;
  mp__rp_cfg(&cfg, o->connect_timeout_ms, o->io_timeout_ms, o->reconnect_ms, o->tls_ca_file);
  cfg.on_connect = on_connect;
  cfg.arg = rp;
  rc = rc ? rc : mp__redis_create(&rp->tx, url, &cfg);
  rc = rc ? rc : mp__redis_create(&rp->rx, url, &cfg);
  if (rc < 0) {
    rpool_free(rp);
    return rc;
  }
  *out = rp;
  return 0;
}

int mp_redis_pool_create(mp_pool **pool, const char *url, const char *name,
                         const mp_redis_pool_opts *opts) {
  mp_redis_pool_opts none;
  memset(&none, 0, sizeof none);
  const mp_redis_pool_opts *o = opts ? opts : &none;
  if (pool)
    *pool = NULL;
  if (pool == NULL || url == NULL || name == NULL)
    return mp_set_error(MP_EINVAL, "mp_redis_pool_create: pool, url or name is NULL");
  if (o->workers < 0 || o->attempts < 0 || o->lease_ms < 0)
    return mp_set_error(MP_EINVAL, "mp_redis_pool_create: workers, attempts or lease_ms < 0");
  mp__rpool *rp = NULL;
  int rc = rpool_new(&rp, url, name, o);
  if (rc < 0)
    return mp__redis_amend(rc, "mp_redis_pool_create: ", "");
  return mp__pool_create_with(pool, o->workers ? o->workers : 4, NULL, pool_thread, rp, rpool_free);
}
