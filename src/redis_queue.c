/* The Redis-backed queue: an mp_queue over a Redis stream with a consumer group, so that
 * producers and consumers on any machine that reaches the server share one FIFO. The wire
 * format and the guarantees are in docs/redis.md; the atomic steps are the Lua script
 * redis_queue.lua (embedded at build time as mp__redis_queue_lua).
 *
 * A handle keeps up to four connections, each for one job so that a blocked get never
 * holds up a put or a join: tx (put, task_done, close, qsize), rx (get), jn (join) and hb
 * (the heartbeat thread of a joinable queue, which keeps the messages this handle holds
 * from being handed to another consumer while it is alive). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "deadline.h"
#include "platform.h"
#include "queue.h"
#include "redis.h"

extern const char mp__redis_queue_lua[];

#define GROUP "mpq"
#define PRODUCER_TTL "86400000" /* a producer's last sequence number is kept a day */
#define MAX_IDS 1000            /* ids per script call (Lua's unpack limit is ~8000) */
#define REFRESH_MAX "10000"     /* pending messages one heartbeat refreshes */

typedef struct rq rq;

/* One connection and what it serialises. */
typedef struct role {
  rq *q;
  mp__redis *r;
  mp_plat_mutex mu;
  char sha[41]; /* the script's hash on this connection's server */
  int closed;   /* the closed flag that init reported */
} role;

/* A put or task_done sent on tx and not yet confirmed: resent after a reconnect (the
 * producer's sequence numbers make a resent put land once). */
typedef struct txop {
  int done;       /* 0: put of message `seq`; 1: task_done of the id in data */
  uint64_t seq;   /* put: the message's number for this producer */
  uint64_t epoch; /* the connection it was sent on (0: not sent) */
  void *data;
  size_t len;
} txop;

struct rq {
  int joinable;
  size_t prefetch, window, max_message;
  int lease_ms, io_timeout_ms, reconnect_ms;
  char *k_stream, *k_meta, *k_ctl, *k_join, *k_prod;
  char consumer[128];
  role tx, rx, jn, hb;

  /* tx: unconfirmed operations, oldest first */
  txop *ops;
  size_t nops, capops;
  uint64_t next_seq;

  /* rx: messages taken from Redis and not yet handed out (a ring) */
  mp__rentry *buf;
  size_t bhead, blen, bcap;
  int closed_seen, last_empty;
  int64_t next_reclaim;
  char cursor[MP_REDIS_ID_MAX];

  /* joinable: ids handed out and not yet marked done (a ring), and the buffered count */
  mp_plat_mutex held_mu;
  char (*held)[MP_REDIS_ID_MAX];
  size_t hhead, hlen, hcap;
  size_t buffered;

  /* the heartbeat thread */
  mp_plat_thread *hb_thread;
  mp_plat_mutex hb_mu;
  mp_plat_cond hb_cv;
  int hb_stop;
};

static int64_t now_ns(void) { return (int64_t)mp_plat_monotonic_ns(); }

/* Milliseconds left until deadline (-1: MP_FOREVER), at least 0. */
static int left_ms(int64_t deadline) {
  if (deadline < 0)
    return MP_FOREVER;
  int64_t ms = (deadline - now_ns() + 999999) / 1000000;
  return ms <= 0 ? 0 : ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

static int oom(void) { return mp_set_error(MP_ENOMEM, "redis queue: out of memory"); }

/* ---- commands ------------------------------------------------------------------------ */

/* Up to 16 fixed arguments plus a list of variable ones, sent as one command. */
typedef struct cmd {
  int argc;
  const char *argv[16];
  size_t lens[16];
} cmd;

static void arg(cmd *c, const char *s) {
  c->argv[c->argc] = s;
  c->lens[c->argc++] = strlen(s);
}

static void arg_n(cmd *c, const void *p, size_t n) {
  c->argv[c->argc] = p;
  c->lens[c->argc++] = n;
}

/* EVALSHA of the script with the four queue keys (and the producer key with five). */
static void script(cmd *c, const rq *q, const role *ro, int nkeys, const char *op) {
  c->argc = 0;
  arg(c, "EVALSHA");
  arg(c, ro->sha);
  arg(c, nkeys == 5 ? "5" : "4");
  arg(c, q->k_stream);
  arg(c, q->k_meta);
  arg(c, q->k_ctl);
  arg(c, q->k_join);
  if (nkeys == 5)
    arg(c, q->k_prod);
  arg(c, op);
}

static int send(role *ro, const cmd *c) { return mp__redis_send(ro->r, c->argc, c->argv, c->lens); }

/* Sends c with extra arguments appended (ids or messages). */
static int send_with(role *ro, const cmd *c, size_t n, const char *const *extra,
                     const size_t *extra_len) {
  const char **argv = malloc((c->argc + n) * sizeof *argv);
  size_t *lens = malloc((c->argc + n) * sizeof *lens);
  int rc = argv && lens ? 0 : oom();
  if (rc == 0) {
    memcpy(argv, c->argv, c->argc * sizeof *argv);
    memcpy(lens, c->lens, c->argc * sizeof *lens);
    memcpy(argv + c->argc, extra, n * sizeof *argv);
    memcpy(lens + c->argc, extra_len, n * sizeof *lens);
    rc = mp__redis_send(ro->r, c->argc + (int)n, argv, lens);
  }
  free(argv);
  free(lens);
  return rc;
}

/* Reads one reply and turns an error reply into its code. */
static int recv_ok(role *ro, int wait_ms, redisReply **reply, const char *what) {
  int rc = mp__redis_recv(ro->r, wait_ms, reply);
  if (rc == 0 && (*reply)->type == REDIS_REPLY_ERROR) {
    rc = mp__redis_reply_error(ro->r, *reply, what);
    mp__redis_reply_free(*reply);
    *reply = NULL;
  }
  return rc;
}

/* Reads and drops the replies of commands whose answer nobody needs (XDEL, relay). */
static int discard(role *ro, size_t n) {
  for (size_t i = 0; i < n; i++) {
    redisReply *reply;
    int rc = mp__redis_recv(ro->r, 0, &reply);
    if (rc < 0)
      return rc;
    mp__redis_reply_free(reply);
  }
  return 0;
}

static int call_script(role *ro, int nkeys, const char *op, const char *a1, const char *a2,
                       redisReply **reply) {
  cmd c;
  script(&c, ro->q, ro, nkeys, op);
  if (a1)
    arg(&c, a1);
  if (a2)
    arg(&c, a2);
  int rc = discard(ro, mp__redis_owed(ro->r));
  if (rc == 0)
    rc = send(ro, &c);
  if (rc == 0)
    rc = recv_ok(ro, 0, reply, op);
  return rc;
}

/* ---- connections --------------------------------------------------------------------- */

static int resend_ops(rq *q, role *ro);
static int recover_pending(rq *q, role *ro);

/* After every (re)connect: load the script, run init (groups, kind, closed flag), then
 * what the connection's job needs again. */
static int on_connect(mp__redis *r, void *arg_) {
  role *ro = arg_;
  rq *q = ro->q;
  cmd c = {0};
  arg(&c, "SCRIPT");
  arg(&c, "LOAD");
  arg(&c, mp__redis_queue_lua);
  int rc = send(ro, &c);
  c.argc = 0;
  arg(&c, "EVAL");
  arg(&c, mp__redis_queue_lua);
  arg(&c, "4");
  arg(&c, q->k_stream);
  arg(&c, q->k_meta);
  arg(&c, q->k_ctl);
  arg(&c, q->k_join);
  arg(&c, "init");
  arg(&c, q->joinable ? "joinable" : "queue");
  if (rc == 0)
    rc = send(ro, &c);
  redisReply *reply = NULL;
  if (rc == 0 && (rc = recv_ok(ro, 0, &reply, "SCRIPT LOAD")) == 0) {
    if (reply->type != REDIS_REPLY_STRING || reply->len != 40)
      rc = mp_set_error(MP_EPROTO, "%s: SCRIPT LOAD did not answer a SHA1", mp__redis_where(r));
    else
      memcpy(ro->sha, reply->str, 41);
    mp__redis_reply_free(reply);
    reply = NULL;
  }
  int rc2 = recv_ok(ro, 0, &reply, "the queue's init");
  if (rc == 0 && rc2 == 0)
    ro->closed = reply->type == REDIS_REPLY_STRING && reply->len == 1 && reply->str[0] == '1';
  mp__redis_reply_free(reply);
  if (rc == 0)
    rc = rc2;
  if (rc == 0 && ro == &q->tx)
    rc = resend_ops(q, ro);
  if (rc == 0 && ro == &q->rx) {
    q->closed_seen = ro->closed;
    if (q->joinable)
      rc = recover_pending(q, ro);
  }
  return rc;
}

static int role_init(rq *q, role *ro, const char *url, const mp_redis_opts *o) {
  ro->q = q;
  mp__redis_cfg cfg = {o->connect_timeout_ms, o->io_timeout_ms, o->reconnect_ms,
                       o->tls_ca_file,        on_connect,       ro};
  int rc = mp_plat_mutex_init(&ro->mu);
  if (rc == 0 && (rc = mp__redis_create(&ro->r, url, &cfg)) < 0)
    mp_plat_mutex_destroy(&ro->mu);
  return rc;
}

static void role_free(role *ro) {
  if (ro->r == NULL)
    return;
  mp__redis_free(ro->r);
  mp_plat_mutex_destroy(&ro->mu);
  ro->r = NULL;
}

/* Runs fn on the role's connection, reconnecting and running it again while the
 * connection is lost, until the deadline or reconnect_ms after the first loss. */
typedef int (*conn_fn)(rq *q, role *ro, void *arg);
static int with_conn(rq *q, role *ro, int64_t deadline, int reconnect_ms, conn_fn fn, void *a) {
  int64_t first_loss = -1;
  for (;;) {
    int64_t until = deadline;
    if (first_loss >= 0) {
      int64_t cap = first_loss + (int64_t)reconnect_ms * 1000000;
      until = until < 0 || cap < until ? cap : until;
    }
    int rc = mp__redis_ensure(ro->r, until);
    if (rc == 0)
      rc = fn(q, ro, a);
    if (rc != MP_EBROKEN)
      return rc;
    mp__redis_drop(ro->r); /* a server not ready (LOADING) or a deleted group, too */
    int64_t now = now_ns();
    if (first_loss < 0)
      first_loss = now;
    if ((deadline >= 0 && now >= deadline) || now - first_loss >= (int64_t)reconnect_ms * 1000000)
      return rc;
  }
}

/* ---- tx: puts and task_dones, pipelined up to `window` unconfirmed ------------------- */

static int send_op(rq *q, role *ro, txop *op) {
  cmd c;
  char seq[24];
  snprintf(seq, sizeof seq, "%llu", (unsigned long long)op->seq);
  if (op->done) {
    script(&c, q, ro, 4, "done");
    arg_n(&c, op->data, op->len);
  } else {
    script(&c, q, ro, 5, "put");
    arg(&c, seq);
    arg(&c, seq);
    arg(&c, PRODUCER_TTL);
    arg_n(&c, op->data, op->len);
  }
  int rc = send(ro, &c);
  if (rc == 0)
    op->epoch = mp__redis_epoch(ro->r);
  return rc;
}

static int resend_ops(rq *q, role *ro) {
  int rc = 0;
  for (size_t i = 0; i < q->nops && rc == 0; i++)
    rc = send_op(q, ro, &q->ops[i]);
  return rc;
}

static void pop_op(rq *q) {
  free(q->ops[0].data);
  memmove(q->ops, q->ops + 1, (q->nops - 1) * sizeof *q->ops);
  q->nops--;
}

/* Sends what is unsent, then reads confirmations until at most *keep remain. An
 * operation Redis refused (closed queue, out of memory, no permission) is dropped and its
 * error returned once the others are read. */
static int tx_drain(rq *q, role *ro, void *keep_) {
  size_t keep = *(size_t *)keep_;
  int rc = 0, refused = 0;
  uint64_t epoch = mp__redis_epoch(ro->r);
  for (size_t i = 0; i < q->nops && rc == 0; i++)
    if (q->ops[i].epoch != epoch)
      rc = send_op(q, ro, &q->ops[i]);
  while (rc == 0 && q->nops > keep) {
    redisReply *reply;
    if ((rc = mp__redis_recv(ro->r, 0, &reply)) < 0)
      break;
    if (reply->type == REDIS_REPLY_ERROR) {
      int code = mp__redis_reply_error(ro->r, reply, q->ops[0].done ? "task_done" : "put");
      if (code == MP_EBROKEN) /* not ready (LOADING): resend on a new connection */
        rc = code;
      else if (refused == 0)
        refused = code;
    }
    mp__redis_reply_free(reply);
    if (rc == 0)
      pop_op(q);
  }
  return rc < 0 ? rc : refused;
}

/* Queues an operation and confirms all but `window` of them. */
static int tx_submit(rq *q, int done, const void *data, size_t len, int64_t deadline,
                     const char *what) {
  mp_plat_mutex_lock(&q->tx.mu);
  int rc = 0;
  /* Nothing is kept for a server that cannot be reached at all: not queued. */
  if (!mp__redis_connected(q->tx.r))
    rc = with_conn(q, &q->tx, deadline, q->reconnect_ms, tx_drain, &q->nops);
  if (rc == 0 && q->nops == q->capops) {
    size_t cap = q->capops ? q->capops * 2 : 8;
    txop *ops = realloc(q->ops, cap * sizeof *ops);
    if (ops == NULL)
      rc = oom();
    else {
      q->ops = ops;
      q->capops = cap;
    }
  }
  void *copy = rc == 0 ? malloc(len ? len : 1) : NULL;
  if (rc == 0 && copy == NULL)
    rc = oom();
  if (rc < 0) {
    mp_plat_mutex_unlock(&q->tx.mu);
    if (rc == MP_EBROKEN) {
      char before[64];
      snprintf(before, sizeof before, "%s not queued: ", what);
      mp__redis_amend(rc, before, "");
    }
    return rc;
  }
  if (len > 0)
    memcpy(copy, data, len);
  txop op = {done, done ? 0 : q->next_seq++, 0, copy, len};
  q->ops[q->nops++] = op;
  size_t keep = q->window;
  rc = with_conn(q, &q->tx, deadline, q->reconnect_ms, tx_drain, &keep);
  mp_plat_mutex_unlock(&q->tx.mu);
  if (rc == MP_EBROKEN) {
    char after[96];
    snprintf(after, sizeof after, "; the %s is kept and completed once when Redis is back", what);
    mp__redis_amend(rc, "", after);
  }
  return rc;
}

/* ---- rx: getting --------------------------------------------------------------------- */

static int buf_push(rq *q, mp__rentry *e) {
  if (q->blen == q->bcap) {
    size_t cap = q->bcap ? q->bcap * 2 : 16;
    mp__rentry *b = malloc(cap * sizeof *b);
    if (b == NULL)
      return oom();
    for (size_t i = 0; i < q->blen; i++)
      b[i] = q->buf[(q->bhead + i) % q->bcap];
    free(q->buf);
    q->buf = b;
    q->bhead = 0;
    q->bcap = cap;
  }
  q->buf[(q->bhead + q->blen++) % q->bcap] = *e;
  mp_plat_mutex_lock(&q->held_mu);
  q->buffered++;
  mp_plat_mutex_unlock(&q->held_mu);
  return 0;
}

static int known_id(rq *q, const char *id) {
  for (size_t i = 0; i < q->blen; i++)
    if (strcmp(q->buf[(q->bhead + i) % q->bcap].id, id) == 0)
      return 1;
  mp_plat_mutex_lock(&q->held_mu);
  int found = 0;
  for (size_t i = 0; i < q->hlen && !found; i++)
    found = strcmp(q->held[(q->hhead + i) % q->hcap], id) == 0;
  mp_plat_mutex_unlock(&q->held_mu);
  return found;
}

/* Sends a fire-and-forget script call over ids (task_done of bad entries, relay). */
static int send_ids(rq *q, role *ro, const char *op, const char *const *ids, size_t n) {
  cmd c;
  size_t lens[MAX_IDS];
  for (size_t i = 0; i < n; i++)
    lens[i] = strlen(ids[i]);
  if (strcmp(op, "XDEL") == 0) {
    c.argc = 0;
    arg(&c, "XDEL");
    arg(&c, q->k_stream);
  } else
    script(&c, q, ro, 4, op);
  return send_with(ro, &c, n, ids, lens);
}

/* Sorts the entries of one reply: messages into the buffer; close markers are passed on;
 * taken messages of a plain queue are deleted, deleted or malformed ones of a joinable
 * queue are marked done so they never come back. Sends those follow-ups unread. */
static int take_entries(rq *q, role *ro, mp__rentry *es, size_t n) {
  const char *del[MAX_IDS], *done[MAX_IDS];
  size_t ndel = 0, ndone = 0;
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    mp__rentry *e = &es[i];
    if (e->control) {
      q->closed_seen = 1;
      const char *id = e->id;
      if (rc == 0)
        rc = send_ids(q, ro, "relay", &id, 1);
      continue;
    }
    if (q->joinable && e->status != 0)
      done[ndone++] = e->id;
    if (!q->joinable)
      del[ndel++] = e->id;
    if (q->joinable && known_id(q, e->id)) {
      mp__rentry_clear(e);
      continue;
    }
    if (e->status == MP_ENOENT)
      continue;
    if (buf_push(q, e) < 0) { /* out of memory: the message is lost like a dead getter's */
      mp__rentry_clear(e);
      rc = rc ? rc : MP_ENOMEM;
    }
  }
  if (ndel > 0 && rc == 0)
    rc = send_ids(q, ro, "XDEL", del, ndel);
  if (ndone > 0 && rc == 0)
    rc = send_ids(q, ro, "done", done, ndone);
  return rc;
}

/* The head of an XREADGROUP for this handle's consumer: GROUP mpq CONSUMER COUNT count. */
static void xreadgroup(cmd *c, const rq *q, const char *count) {
  c->argc = 0;
  arg(c, "XREADGROUP");
  arg(c, "GROUP");
  arg(c, GROUP);
  arg(c, q->consumer);
  arg(c, "COUNT");
  arg(c, count);
}

/* After a reconnect: the messages this consumer was given but never received (the reply
 * was lost with the connection) are still its own pending ones; read them back. */
static int recover_pending(rq *q, role *ro) {
  char from[MP_REDIS_ID_MAX] = "0";
  for (;;) {
    char count[24];
    snprintf(count, sizeof count, "%zu", q->prefetch < 100 ? (size_t)100 : q->prefetch);
    cmd c;
    xreadgroup(&c, q, count);
    arg(&c, "STREAMS");
    arg(&c, q->k_stream);
    arg(&c, from);
    redisReply *reply;
    int rc = send(ro, &c);
    if (rc == 0)
      rc = recv_ok(ro, 0, &reply, "XREADGROUP");
    if (rc < 0)
      return rc;
    size_t cap = (size_t)atoll(count), n = 0;
    mp__rentry *es = calloc(cap, sizeof *es);
    rc = es ? mp__redis_read_entries(reply, q->k_stream, NULL, q->max_message, es, cap, &n) : oom();
    mp__redis_reply_free(reply);
    if (rc == 0 && n > 0)
      snprintf(from, sizeof from, "%s", es[n - 1].id);
    if (rc == 0)
      rc = take_entries(q, ro, es, n);
    free(es);
    if (rc < 0 || n == 0)
      return rc;
  }
}

typedef struct fill_arg {
  int64_t deadline;
} fill_arg;

/* Fills the buffer: blocks in Redis (XREADGROUP BLOCK) for at most a slice at a time, so
 * that a joinable queue's getter reclaims, every half lease, what dead consumers left. */
static int rx_fill(rq *q, role *ro, void *a) {
  int64_t deadline = ((fill_arg *)a)->deadline;
  char count[24], block[24], lease[24];
  snprintf(count, sizeof count, "%zu", q->prefetch);
  snprintf(lease, sizeof lease, "%d", q->lease_ms);
  int slice = q->joinable ? q->lease_ms / 2 : q->lease_ms;
  while (q->blen == 0) {
    int left = left_ms(deadline);
    int64_t now = now_ns();
    int reclaim = q->joinable && now >= q->next_reclaim;
    int wait = q->closed_seen || reclaim || left == 0 ? -1
               : left == MP_FOREVER || left > slice   ? slice
                                                      : left;
    size_t owed = mp__redis_owed(ro->r);
    int rc = 0, check_closed = q->last_empty && !q->closed_seen;
    cmd c = {0};
    if (check_closed) { /* a getter that died while passing on the close marker */
      arg(&c, "HGET");
      arg(&c, q->k_meta);
      arg(&c, "closed");
      rc = send(ro, &c);
    }
    if (rc == 0 && reclaim) {
      c.argc = 0;
      arg(&c, "XAUTOCLAIM");
      arg(&c, q->k_stream);
      arg(&c, GROUP);
      arg(&c, q->consumer);
      arg(&c, lease);
      arg(&c, q->cursor);
      arg(&c, "COUNT");
      arg(&c, count);
      rc = send(ro, &c);
    }
    xreadgroup(&c, q, count);
    if (wait >= 0) {
      snprintf(block, sizeof block, "%d", wait);
      arg(&c, "BLOCK");
      arg(&c, block);
    }
    if (!q->joinable)
      arg(&c, "NOACK");
    arg(&c, "STREAMS");
    arg(&c, q->k_stream);
    arg(&c, q->k_ctl);
    arg(&c, ">");
    arg(&c, ">");
    if (rc == 0)
      rc = send(ro, &c);
    if (rc == 0)
      rc = discard(ro, owed);
    redisReply *reply = NULL;
    if (rc == 0 && check_closed && (rc = recv_ok(ro, 0, &reply, "HGET")) == 0) {
      if (reply->type == REDIS_REPLY_STRING && reply->len == 1 && reply->str[0] == '1')
        q->closed_seen = 1;
      mp__redis_reply_free(reply);
    }
    size_t cap = 2 * q->prefetch + 1, n = 0;
    mp__rentry *es = calloc(cap, sizeof *es);
    if (rc == 0 && es == NULL)
      rc = oom();
    if (rc == 0 && reclaim && (rc = recv_ok(ro, 0, &reply, "XAUTOCLAIM")) == 0) {
      rc = mp__redis_claim_entries(reply, q->max_message, es, cap, &n, q->cursor);
      mp__redis_reply_free(reply);
      q->next_reclaim = now + (int64_t)q->lease_ms * 500000;
    }
    if (rc == 0 && (rc = recv_ok(ro, wait, &reply, "XREADGROUP")) == 0) {
      rc = mp__redis_read_entries(reply, q->k_stream, q->k_ctl, q->max_message, es, cap, &n);
      mp__redis_reply_free(reply);
    }
    if (rc == 0)
      rc = take_entries(q, ro, es, n);
    else
      for (size_t i = 0; i < n; i++)
        mp__rentry_clear(&es[i]);
    free(es);
    if (rc < 0)
      return rc;
    q->last_empty = n == 0 && !reclaim;
    if (q->blen > 0)
      return 0;
    if (q->closed_seen && wait < 0 && !reclaim)
      return mp_set_error(MP_EEOF, "mp_queue_get: the queue is closed and drained");
    if (left == 0 && !reclaim)
      return mp_set_error(MP_EEMPTY, "mp_queue_get: the queue is empty");
  }
  return 0;
}

static int hb_start(rq *q);

/* Gives the next message (the caller frees e->data). */
static int rx_get(rq *q, mp__rentry *e, int timeout_ms) {
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc < 0)
    return rc;
  mp_plat_mutex_lock(&q->rx.mu);
  if (q->joinable && q->hb_thread == NULL)
    rc = hb_start(q);
  fill_arg fa = {deadline};
  if (rc == 0 && q->blen == 0)
    rc = with_conn(q, &q->rx, deadline, q->reconnect_ms, rx_fill, &fa);
  if (rc == 0) {
    *e = q->buf[q->bhead];
    q->bhead = (q->bhead + 1) % q->bcap;
    q->blen--;
    mp_plat_mutex_lock(&q->held_mu);
    q->buffered--;
    if (q->joinable && e->status == 0) { /* handed out: task_done will name it */
      if (q->hlen == q->hcap) {
        size_t cap = q->hcap ? q->hcap * 2 : 16;
        char(*h)[MP_REDIS_ID_MAX] = malloc(cap * sizeof *h);
        if (h == NULL)
          rc = oom();
        else {
          for (size_t i = 0; i < q->hlen; i++)
            memcpy(h[i], q->held[(q->hhead + i) % q->hcap], MP_REDIS_ID_MAX);
          free(q->held);
          q->held = h;
          q->hhead = 0;
          q->hcap = cap;
        }
      }
      if (rc == 0)
        memcpy(q->held[(q->hhead + q->hlen++) % q->hcap], e->id, MP_REDIS_ID_MAX);
    }
    mp_plat_mutex_unlock(&q->held_mu);
    if (rc == 0 && e->status != 0)
      rc = mp_set_error(e->status, "mp_queue_get: dropped a malformed message: %s", e->why);
    if (rc < 0)
      mp__rentry_clear(e);
  }
  mp_plat_mutex_unlock(&q->rx.mu);
  return rc;
}

/* ---- the heartbeat (joinable queues) ------------------------------------------------- */

/* Runs a script operation about this handle's consumer ("refresh", "forget"). */
static int consumer_op(rq *q, role *ro, void *op) {
  redisReply *reply = NULL;
  int rc = call_script(ro, 4, op, q->consumer, strcmp(op, "refresh") ? NULL : REFRESH_MAX, &reply);
  mp__redis_reply_free(reply);
  return rc;
}

/* Every third of a lease, while this handle holds messages, tells Redis it is alive. */
static void hb_main(void *a) {
  rq *q = a;
  int64_t period = (int64_t)q->lease_ms * 1000000 / 3;
  mp_plat_mutex_lock(&q->hb_mu);
  while (!q->hb_stop) {
    int64_t next = now_ns() + period;
    while (!q->hb_stop && now_ns() < next)
      mp_plat_cond_wait(&q->hb_cv, &q->hb_mu, next);
    if (q->hb_stop)
      break;
    mp_plat_mutex_unlock(&q->hb_mu);
    mp_plat_mutex_lock(&q->held_mu);
    size_t holding = q->hlen + q->buffered;
    mp_plat_mutex_unlock(&q->held_mu);
    if (holding > 0) {
      mp_plat_mutex_lock(&q->hb.mu);
      with_conn(q, &q->hb, now_ns() + period, q->lease_ms / 3, consumer_op, "refresh");
      mp_plat_mutex_unlock(&q->hb.mu);
    }
    mp_plat_mutex_lock(&q->hb_mu);
  }
  mp_plat_mutex_unlock(&q->hb_mu);
}

static int hb_start(rq *q) { return mp_plat_thread_start(&q->hb_thread, hb_main, q); }

static void hb_stop(rq *q) {
  if (q->hb_thread == NULL)
    return;
  mp_plat_mutex_lock(&q->hb_mu);
  q->hb_stop = 1;
  mp_plat_cond_broadcast(&q->hb_cv);
  mp_plat_mutex_unlock(&q->hb_mu);
  mp_plat_thread_wait(q->hb_thread, -1);
  mp_plat_thread_reap(q->hb_thread);
  q->hb_thread = NULL;
}

/* ---- the queue operations ------------------------------------------------------------ */

static int rq_put(void *impl, const void *buf, size_t len, int timeout_ms) {
  rq *q = impl;
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc < 0)
    return rc;
  if (len > q->max_message)
    return mp_set_error(MP_EINVAL, "mp_queue_put: %zu bytes is above the queue's max_message %zu",
                        len, q->max_message);
  return tx_submit(q, 0, buf, len, deadline, "message");
}

static int rq_get(void *impl, void **buf, size_t *len, int timeout_ms) {
  mp__rentry e;
  int rc = rx_get(impl, &e, timeout_ms);
  if (rc == 0) {
    *buf = e.data;
    *len = e.len;
  }
  return rc;
}

/* Confirms every pipelined operation (with_conn over tx_drain keeping none). */
static int tx_flush_locked(rq *q, int64_t deadline) {
  size_t keep = 0;
  return q->nops == 0 ? 0 : with_conn(q, &q->tx, deadline, q->reconnect_ms, tx_drain, &keep);
}

typedef struct script_arg {
  const char *op;
  long long result;
} script_arg;

/* Flushes, then runs a script op that answers an integer. */
static int tx_script(rq *q, role *ro, void *a) {
  script_arg *sa = a;
  size_t keep = 0;
  int rc = tx_drain(q, ro, &keep);
  redisReply *reply = NULL;
  if (rc == 0)
    rc = call_script(ro, 4, sa->op, NULL, NULL, &reply);
  if (rc == 0 && reply->type != REDIS_REPLY_INTEGER)
    rc = mp_set_error(MP_EPROTO, "%s: '%s' answered a non-integer", mp__redis_where(ro->r), sa->op);
  if (rc == 0)
    sa->result = reply->integer;
  mp__redis_reply_free(reply);
  return rc;
}

static int run_tx_script(rq *q, const char *op, long long *result) {
  script_arg sa = {op, 0};
  mp_plat_mutex_lock(&q->tx.mu);
  int rc = with_conn(q, &q->tx, -1, q->reconnect_ms, tx_script, &sa);
  mp_plat_mutex_unlock(&q->tx.mu);
  if (result)
    *result = sa.result;
  return rc;
}

static int rq_qsize(void *impl, size_t *n) {
  rq *q = impl;
  long long count = 0;
  int rc = run_tx_script(q, "size", &count);
  if (rc == 0) {
    mp_plat_mutex_lock(&q->held_mu);
    *n = (size_t)(count < 0 ? 0 : count) + q->buffered;
    mp_plat_mutex_unlock(&q->held_mu);
  }
  return rc;
}

static int rq_empty(void *impl) {
  size_t n = 0;
  int rc = rq_qsize(impl, &n);
  return rc < 0 ? rc : n == 0;
}

static int rq_full(void *impl) {
  (void)impl;
  return 0; /* no maxsize: bounded by Redis' memory */
}

static int rq_close(void *impl) { return run_tx_script(impl, "close", NULL); }

static int rq_flush(void *impl, int timeout_ms) {
  rq *q = impl;
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc < 0)
    return rc;
  mp_plat_mutex_lock(&q->tx.mu);
  rc = tx_flush_locked(q, deadline);
  mp_plat_mutex_unlock(&q->tx.mu);
  return rc;
}

static int rq_task_done(void *impl) {
  rq *q = impl;
  char id[MP_REDIS_ID_MAX];
  mp_plat_mutex_lock(&q->held_mu);
  int have = q->hlen > 0;
  if (have) {
    memcpy(id, q->held[q->hhead], MP_REDIS_ID_MAX);
    q->hhead = (q->hhead + 1) % q->hcap;
    q->hlen--;
  }
  mp_plat_mutex_unlock(&q->held_mu);
  if (!have)
    return mp_set_error(MP_EINVAL, "task_done() called too many times: this handle holds no "
                                   "message that it got and has not marked done");
  return tx_submit(q, 1, id, strlen(id), -1, "task_done");
}

typedef struct join_arg {
  int64_t deadline;
} join_arg;

/* Waits for the join stream's next entry after the moment no task was left. */
static int jn_wait(rq *q, role *ro, void *a) {
  int64_t deadline = ((join_arg *)a)->deadline;
  for (;;) {
    redisReply *reply = NULL;
    int rc = call_script(ro, 4, "unfinished", NULL, NULL, &reply);
    if (rc < 0)
      return rc;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        reply->element[1]->len >= MP_REDIS_ID_MAX) {
      mp__redis_reply_free(reply);
      return mp_set_error(MP_EPROTO, "%s: 'unfinished' answered an unexpected shape",
                          mp__redis_where(ro->r));
    }
    long long unfinished = reply->element[0]->integer;
    char last[MP_REDIS_ID_MAX];
    memcpy(last, reply->element[1]->str, reply->element[1]->len + 1);
    mp__redis_reply_free(reply);
    if (unfinished <= 0)
      return 0;
    int left = left_ms(deadline);
    if (left == 0)
      return mp_set_error(MP_ETIMEDOUT, "mp_queue_join: %lld tasks still unfinished", unfinished);
    char block[24];
    snprintf(block, sizeof block, "%d", left == MP_FOREVER ? 0 : left);
    cmd c = {0};
    arg(&c, "XREAD");
    arg(&c, "COUNT");
    arg(&c, "1");
    arg(&c, "BLOCK");
    arg(&c, block);
    arg(&c, "STREAMS");
    arg(&c, q->k_join);
    arg(&c, last);
    if ((rc = send(ro, &c)) == 0)
      rc = recv_ok(ro, left, &reply, "XREAD");
    if (rc < 0)
      return rc;
    int woke = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0;
    mp__redis_reply_free(reply);
    if (woke)
      return 0; /* no task was left at some moment after join began */
  }
}

static int rq_join(void *impl, int timeout_ms) {
  rq *q = impl;
  join_arg ja;
  int rc = mp__deadline_ns(timeout_ms, &ja.deadline);
  if (rc < 0)
    return rc;
  rc = rq_flush(q, timeout_ms); /* this handle's own puts count too */
  if (rc < 0)
    return rc;
  mp_plat_mutex_lock(&q->jn.mu);
  rc = with_conn(q, &q->jn, ja.deadline, q->reconnect_ms, jn_wait, &ja);
  mp_plat_mutex_unlock(&q->jn.mu);
  return rc;
}

/* ---- create and free ----------------------------------------------------------------- */

static int rq_noop(rq *q, role *ro, void *a) {
  (void)q, (void)ro, (void)a;
  return 0;
}

/* Gives the messages this handle holds back: a joinable queue's become idle at once (the
 * next getter's XAUTOCLAIM takes them), a plain queue's prefetched ones are put again. */
static int release_held(rq *q, role *ro, void *a) {
  (void)a;
  if (!q->joinable) {
    if (q->nops + q->blen > q->capops) {
      txop *ops = realloc(q->ops, (q->nops + q->blen) * sizeof *ops);
      if (ops == NULL)
        return oom();
      q->ops = ops;
      q->capops = q->nops + q->blen;
    }
    for (; q->blen > 0; q->bhead = (q->bhead + 1) % q->bcap, q->blen--) {
      mp__rentry *e = &q->buf[q->bhead];
      if (e->status == 0)
        q->ops[q->nops++] = (txop){0, q->next_seq++, 0, e->data, e->len};
      else
        mp__rentry_clear(e);
    }
    size_t keep = 0;
    return tx_drain(q, ro, &keep);
  }
  const char *ids[MAX_IDS];
  size_t n = 0;
  for (size_t i = 0; i < q->blen && n < MAX_IDS; i++)
    ids[n++] = q->buf[(q->bhead + i) % q->bcap].id;
  for (size_t i = 0; i < q->hlen && n < MAX_IDS; i++)
    ids[n++] = q->held[(q->hhead + i) % q->hcap];
  if (n == 0)
    return 0;
  cmd c = {0};
  arg(&c, "XCLAIM");
  arg(&c, q->k_stream);
  arg(&c, GROUP);
  arg(&c, q->consumer);
  arg(&c, "0");
  size_t lens[MAX_IDS + 3];
  const char *tail[MAX_IDS + 3];
  for (size_t i = 0; i < n; i++) {
    tail[i] = ids[i];
    lens[i] = strlen(ids[i]);
  }
  tail[n] = "IDLE";
  tail[n + 1] = "2000000000"; /* idle for weeks: past any lease */
  tail[n + 2] = "JUSTID";
  for (int i = 0; i < 3; i++)
    lens[n + i] = strlen(tail[n + i]);
  int rc = send_with(ro, &c, n + 3, tail, lens);
  redisReply *reply = NULL;
  if (rc == 0)
    rc = recv_ok(ro, 0, &reply, "XCLAIM");
  mp__redis_reply_free(reply);
  return rc;
}

static void rq_free(void *impl) {
  rq *q = impl;
  if (q == NULL)
    return;
  hb_stop(q);
  if (q->tx.r && (mp__redis_connected(q->tx.r) || q->nops > 0)) {
    /* Best effort within io_timeout: confirm pipelined operations, give back what this
     * handle holds, leave the group. */
    int64_t deadline = now_ns() + (int64_t)q->io_timeout_ms * 1000000;
    mp_plat_mutex_lock(&q->tx.mu);
    if (tx_flush_locked(q, deadline) == 0 &&
        with_conn(q, &q->tx, deadline, 0, release_held, NULL) == 0 && mp__redis_epoch(q->rx.r) > 0)
      with_conn(q, &q->tx, deadline, 0, consumer_op, "forget");
    mp_plat_mutex_unlock(&q->tx.mu);
  }
  role_free(&q->tx);
  role_free(&q->rx);
  role_free(&q->jn);
  role_free(&q->hb);
  for (size_t i = 0; i < q->nops; i++)
    free(q->ops[i].data);
  free(q->ops);
  for (size_t i = 0; i < q->blen; i++)
    mp__rentry_clear(&q->buf[(q->bhead + i) % q->bcap]);
  free(q->buf);
  free(q->held);
  mp_plat_mutex_destroy(&q->held_mu);
  mp_plat_cond_destroy(&q->hb_cv);
  mp_plat_mutex_destroy(&q->hb_mu);
  free(q->k_stream);
  free(q->k_meta);
  free(q->k_ctl);
  free(q->k_join);
  free(q->k_prod);
  free(q);
}

/* Values travel as their MessagePack encoding through put and get (queue.c). */
static const mp__queue_ops plain_ops = {"Redis queue", rq_put,   rq_get,  NULL,     NULL,
                                        rq_qsize,      rq_empty, rq_full, rq_close, NULL,
                                        NULL,          rq_free,  rq_flush};
static const mp__queue_ops joinable_ops = {
    "Redis joinable queue", rq_put,  rq_get,  NULL,    NULL, rq_qsize, rq_empty, rq_full, rq_close,
    rq_task_done,           rq_join, rq_free, rq_flush};

static int check_name(const char *name, const char *what, size_t max, int tag_ok) {
  if (name == NULL)
    return mp_set_error(MP_EINVAL, "mp_redis_queue_create: %s is NULL", what);
  size_t n = strnlen(name, max + 1);
  if (n == 0 || n > max)
    return mp_set_error(MP_EINVAL, "mp_redis_queue_create: %s must have 1 to %zu bytes", what, max);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c < 0x20 || c == 0x7f || (!tag_ok && (c == '{' || c == '}' || c == ' ')))
      return mp_set_error(MP_EINVAL, "mp_redis_queue_create: %s may not hold control characters%s",
                          what, tag_ok ? "" : ", spaces or braces");
  }
  return 0;
}

/* "mpq:{NAME}" + suffix, malloc'd. */
static char *key(const char *name, const char *suffix) {
  size_t n = strlen(name) + strlen(suffix) + 8;
  char *k = malloc(n);
  if (k)
    snprintf(k, n, "mpq:{%s}%s", name, suffix);
  return k;
}

static int fill_opts(const mp_redis_opts *in, mp_redis_opts *o) {
  memset(o, 0, sizeof *o);
  if (in)
    *o = *in;
  if (o->connect_timeout_ms < 0 || o->io_timeout_ms < 0 || o->reconnect_ms < 0 || o->lease_ms < 0)
    return mp_set_error(MP_EINVAL, "mp_redis_queue_create: timeouts must be 0 (the default) or "
                                   "positive");
  if (o->lease_ms != 0 && o->lease_ms < 100)
    return mp_set_error(MP_EINVAL, "mp_redis_queue_create: lease_ms must be at least 100");
  if (o->prefetch > MP_REDIS_MAX_PREFETCH)
    return mp_set_error(MP_EINVAL, "mp_redis_queue_create: prefetch above %d",
                        MP_REDIS_MAX_PREFETCH);
  o->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
  o->io_timeout_ms = o->io_timeout_ms ? o->io_timeout_ms : 10000;
  o->reconnect_ms = o->reconnect_ms ? o->reconnect_ms : 30000;
  o->lease_ms = o->lease_ms ? o->lease_ms : 10000;
  o->prefetch = o->prefetch ? o->prefetch : 1;
  o->max_message = o->max_message ? o->max_message : MP_CONN_DEFAULT_MAX_MESSAGE;
  return 0;
}

static int rq_init(rq *q, const char *url, const char *name, const mp_redis_opts *o) {
  q->joinable = o->joinable != 0;
  q->prefetch = o->prefetch;
  q->window = o->pipeline;
  q->max_message = o->max_message;
  q->lease_ms = o->lease_ms;
  q->io_timeout_ms = o->io_timeout_ms;
  q->reconnect_ms = o->reconnect_ms;
  snprintf(q->cursor, sizeof q->cursor, "0-0");
  unsigned char rnd[8];
  int rc = mp_random_bytes(rnd, sizeof rnd);
  char token[64];
  snprintf(token, sizeof token, "%lld-%02x%02x%02x%02x%02x%02x%02x%02x", (long long)mp_getpid(),
           rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
  if (o->consumer)
    snprintf(q->consumer, sizeof q->consumer, "%s", o->consumer);
  else
    snprintf(q->consumer, sizeof q->consumer, "c-%s", token);
  char prod[80];
  snprintf(prod, sizeof prod, ":p:%s", token);
  q->k_stream = key(name, "");
  q->k_meta = key(name, ":meta");
  q->k_ctl = key(name, ":ctl");
  q->k_join = key(name, ":join");
  q->k_prod = key(name, prod);
  if (rc == 0 && !(q->k_stream && q->k_meta && q->k_ctl && q->k_join && q->k_prod))
    rc = oom();
  if (rc == 0)
    rc = mp_plat_mutex_init(&q->held_mu);
  if (rc == 0 && (rc = mp_plat_mutex_init(&q->hb_mu)) < 0)
    mp_plat_mutex_destroy(&q->held_mu);
  if (rc == 0 && (rc = mp_plat_cond_init(&q->hb_cv)) < 0) {
    mp_plat_mutex_destroy(&q->hb_mu);
    mp_plat_mutex_destroy(&q->held_mu);
  }
  if (rc < 0)
    return rc;
  role *roles[4] = {&q->tx, &q->rx, &q->jn, &q->hb};
  for (int i = 0; i < 4 && rc == 0; i++)
    rc = role_init(q, roles[i], url, o);
  return rc;
}

int mp_redis_queue_create(mp_queue **out, const char *url, const char *name,
                          const mp_redis_opts *opts) {
  mp_redis_opts o;
  if (out == NULL)
    return mp_set_error(MP_EINVAL, "mp_redis_queue_create: q is NULL");
  *out = NULL;
  int rc = fill_opts(opts, &o);
  if (rc == 0)
    rc = check_name(name, "the queue name", MP_REDIS_NAME_MAX, 0);
  if (rc == 0 && o.consumer)
    rc = check_name(o.consumer, "the consumer name", 100, 0);
  if (rc < 0)
    return rc;
  rq *q = calloc(1, sizeof *q);
  if (q == NULL)
    return oom();
  rc = rq_init(q, url, name, &o);
  if (rc == 0) { /* the first connection: Redis down, a bad password, a kind mismatch fail here */
    mp_plat_mutex_lock(&q->tx.mu);
    rc = with_conn(q, &q->tx, now_ns() + (int64_t)o.connect_timeout_ms * 1000000, 0, rq_noop, NULL);
    mp_plat_mutex_unlock(&q->tx.mu);
  }
  if (rc == 0)
    rc = mp__queue_wrap(out, q->joinable ? &joinable_ops : &plain_ops, q);
  if (rc < 0) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", mp_last_error());
    rq_free(q);
    mp_set_error(rc, "%s", msg);
  }
  return rc;
}

static int del_keys(mp__redis *r, const char *name) {
  char *k[4] = {key(name, ""), key(name, ":meta"), key(name, ":ctl"), key(name, ":join")};
  int rc = k[0] && k[1] && k[2] && k[3] ? 0 : oom();
  if (rc == 0) {
    const char *argv[5] = {"DEL", k[0], k[1], k[2], k[3]};
    size_t lens[5];
    for (int i = 0; i < 5; i++)
      lens[i] = strlen(argv[i]);
    redisReply *reply = NULL;
    rc = mp__redis_call(r, 5, argv, lens, &reply);
    mp__redis_reply_free(reply);
  }
  for (int i = 0; i < 4; i++)
    free(k[i]);
  return rc;
}

int mp_redis_queue_delete(const char *url, const char *name, int timeout_ms) {
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc == 0)
    rc = check_name(name, "the queue name", MP_REDIS_NAME_MAX, 0);
  if (rc < 0)
    return rc;
  mp__redis_cfg cfg = {timeout_ms > 0 ? timeout_ms : 5000, 10000, 30000, NULL, NULL, NULL};
  mp__redis *r;
  if ((rc = mp__redis_create(&r, url, &cfg)) < 0)
    return rc;
  rc = mp__redis_ensure(r, deadline);
  if (rc == 0)
    rc = del_keys(r, name);
  mp__redis_free(r);
  return rc;
}
