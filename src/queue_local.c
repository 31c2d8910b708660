/* The local inter-process queue: a byte ring in shared memory.
 *
 * Why a ring and not a pipe: a pipe costs two system calls per message, which caps a
 * queue near 3x Python's; the ring costs none when nobody waits.
 *
 * Shape. One writer and one reader at a time: putters serialise on the robust write lock,
 * getters on the robust read lock, so the ring itself is single-producer single-consumer
 * and needs no lock of its own. The writer owns `wstate` (bytes written + messages
 * started), the reader owns `rstate` (bytes read + messages taken); each packs position
 * and count into one 64-bit word so that a single atomic store publishes both.
 *
 * Crash safety follows from the publication order: a record's bytes are written first and
 * become visible only with the store of `wstate`, so a writer killed mid-record leaves
 * nothing behind; a reader that dies before storing `rstate` leaves the record for the
 * next reader. Messages larger than a quarter of the ring travel as FIRST, MIDDLE..., LAST
 * records under the write lock; `writing_id` names the message in progress. A writer that
 * dies or gives up leaves a partial message whose reader notices (writing_id changed, or
 * the write lock is free / owner-dead) and discards it; parts without a FIRST are orphans
 * and skipped. Nothing partial is ever delivered.
 *
 * Waiting. A waiter clears its event, raises its flag, re-checks, then sleeps; the other
 * side stores its state, then sets the event only if the flag is up (a Dekker pair over
 * seq_cst atomics), so the fast path makes no system call. Only the lock holder waits on
 * not_empty / not_full, so each event has at most one sleeper. A short bounded spin
 * before sleeping avoids a futex round trip per message when both sides are busy. A side
 * killed between storing its state and setting the event wakes nobody, so every sleep here
 * lasts at most MP_PLAT_RECHECK_NS before the sleeper looks again.
 *
 * JoinableQueue. Unfinished tasks are the messages started (wstate's count) minus
 * `tasks_done` (under jlock): task_done calls plus the messages the queue discarded (a large
 * message its writer abandoned, dropped by its reader). A put changes the count in the same
 * store that publishes its first record, so no death can leave the two apart. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "xfer.h"
#include "args.h"
#include "deadline.h"
#include "queue.h"
#include "platform.h"

#if ATOMIC_LLONG_LOCK_FREE != 2 || ATOMIC_INT_LOCK_FREE != 2
#  error "the queue needs address-free lock-free 32- and 64-bit atomics in shared memory"
#endif

#define QMAGIC 0x6d705175u /* "uQpm" */
#define POS_BITS 36
#define POS_MASK ((UINT64_C(1) << POS_BITS) - 1)
#define CNT_MASK ((UINT64_C(1) << (64 - POS_BITS)) - 1)
#define RING_MIN ((size_t)4096)
#define RING_MAX ((size_t)1 << 30)
#define REC_HDR 16
#define SPINS 200
#define ABANDONED 1 /* internal: the partial message's writer is gone */

enum { REC_SINGLE = 1, REC_FIRST, REC_MIDDLE, REC_LAST };

struct rec {
  uint32_t len; /* payload bytes */
  uint8_t type;
  uint8_t check; /* catches a header that is not one (corruption by a stray writer) */
  uint16_t zero;
  uint64_t id; /* the message id of a part; 0 for SINGLE */
};

struct qhdr {
  uint32_t magic, joinable;
  uint64_t ring_size, maxsize, max_message, chunk; /* fixed at creation */
  /* the write-lock holder's line */
  _Alignas(64) _Atomic uint64_t wstate;
  uint64_t wcache_r; /* last rstate seen by the writer: re-read only when short of room */
  _Atomic uint64_t writing_id;
  uint64_t next_id;
  /* the read-lock holder's line */
  _Alignas(64) _Atomic uint64_t rstate;
  uint64_t rcache_w;
  /* flags both sides read */
  _Alignas(64) _Atomic uint32_t reader_waiting;
  _Atomic uint32_t writer_waiting;
  _Atomic uint32_t closed;
  uint64_t tasks_done; /* JoinableQueue: tasks done (mod 2^28), under jlock */
};

#define HDR_SIZE ((sizeof(struct qhdr) + 63) & ~(size_t)63)

typedef struct lq {
  mp_plat_shm *shm;
  size_t shm_size;
  struct qhdr *h;
  unsigned char *ring;
  mp_plat_plock *rlock, *wlock, *jlock;
  mp_plat_pevent *not_empty, *not_full, *all_done;
} lq;

static const mp__queue_ops lq_ops;

/* ---- small helpers ----------------------------------------------------------------- */

static uint64_t st_pos(uint64_t s) { return s & POS_MASK; }
static uint64_t st_cnt(uint64_t s) { return s >> POS_BITS; }
static uint64_t st_make(uint64_t cnt, uint64_t pos) {
  return ((cnt & CNT_MASK) << POS_BITS) | (pos & POS_MASK);
}
static uint64_t st_used(uint64_t w, uint64_t r) { return (st_pos(w) - st_pos(r)) & POS_MASK; }
static uint64_t st_queued(uint64_t w, uint64_t r) { return (st_cnt(w) - st_cnt(r)) & CNT_MASK; }
static uint64_t rec_size(uint64_t len) { return REC_HDR + ((len + 7) & ~(uint64_t)7); }
static uint8_t rec_check(uint32_t len, uint8_t type) {
  return (uint8_t)(0x5a ^ type ^ len ^ (len >> 8) ^ (len >> 16) ^ (len >> 24));
}

/* The end of one sleep: the deadline, or sooner, so that a wake-up lost with a killed
 * process costs at most MP_PLAT_RECHECK_NS. */
static int64_t recheck_until(int64_t deadline) {
  int64_t next = (int64_t)mp_plat_monotonic_ns() + MP_PLAT_RECHECK_NS;
  return deadline >= 0 && deadline < next ? deadline : next;
}

static int passed(int64_t deadline) {
  return deadline >= 0 && (int64_t)mp_plat_monotonic_ns() >= deadline;
}

static void ring_write(lq *q, uint64_t pos, const void *src, size_t n) {
  size_t off = (size_t)(pos & (q->h->ring_size - 1)), first = (size_t)q->h->ring_size - off;
  if (n == 0)
    return;
  if (first > n)
    first = n;
  memcpy(q->ring + off, src, first);
  memcpy(q->ring, (const unsigned char *)src + first, n - first);
}

static void ring_read(lq *q, uint64_t pos, void *dst, size_t n) {
  size_t off = (size_t)(pos & (q->h->ring_size - 1)), first = (size_t)q->h->ring_size - off;
  if (n == 0)
    return;
  if (first > n)
    first = n;
  memcpy(dst, q->ring + off, first);
  memcpy((unsigned char *)dst + first, q->ring, n - first);
}

static int closed_error(const char *what) {
  return mp_set_error(MP_ECLOSED, "%s: the queue was closed (mp_queue_close)", what);
}

/* Takes a lock; an owner-dead lock is taken over after `repair`. */
static int take(lq *q, mp_plat_plock *l, int64_t deadline, void (*repair)(lq *)) {
  int rc = mp_plat_plock_acquire(l, deadline);
  if (rc == MP_EOWNERDEAD) {
    repair(q);
    rc = 0;
  }
  return rc;
}

/* ---- the writer side (holds wlock) ------------------------------------------------- */

/* A writer died holding the write lock: its record was never published; a large message
 * it had begun is declared abandoned so that its reader drops the parts. */
static void repair_writer(lq *q) {
  atomic_store(&q->h->writer_waiting, 0);
  if (atomic_load(&q->h->writing_id) != 0) {
    atomic_store(&q->h->writing_id, 0);
    mp_plat_pevent_set(q->not_empty);
  }
}

static int room_ok(lq *q, uint64_t need, int slot) {
  struct qhdr *h = q->h;
  uint64_t w = atomic_load_explicit(&h->wstate, memory_order_relaxed);
  for (int fresh = 0;; fresh = 1) {
    uint64_t r = h->wcache_r;
    if (h->ring_size - st_used(w, r) >= need &&
        (!slot || h->maxsize == 0 || st_queued(w, r) < h->maxsize))
      return 1;
    if (fresh)
      return 0;
    h->wcache_r = atomic_load(&h->rstate);
  }
}

static int wait_room(lq *q, uint64_t need, int slot, int64_t deadline) {
  struct qhdr *h = q->h;
  for (;;) {
    if (atomic_load(&h->closed))
      return closed_error("mp_queue_put");
    for (int i = 0; i < SPINS; i++) {
      if (room_ok(q, need, slot))
        return 0;
      mp__cpu_relax();
    }
    mp_plat_pevent_clear(q->not_full);
    atomic_store(&h->writer_waiting, 1);
    if (!room_ok(q, need, slot) && !atomic_load(&h->closed)) {
      int rc = mp_plat_pevent_wait(q->not_full, recheck_until(deadline));
      if (rc == MP_ETIMEDOUT && passed(deadline) && !room_ok(q, need, slot)) {
        atomic_store(&h->writer_waiting, 0);
        return mp_set_error(MP_EFULL, "mp_queue_put: the queue stayed full until the timeout");
      }
      if (rc != 0 && rc != MP_ETIMEDOUT) {
        atomic_store(&h->writer_waiting, 0);
        return rc;
      }
    }
    atomic_store(&h->writer_waiting, 0);
  }
}

/* Writes one record: header, optional 8-byte prefix, data; then publishes it. */
static int put_record(lq *q, int type, uint64_t id, const uint64_t *prefix, const void *data,
                      size_t len, int64_t deadline) {
  struct qhdr *h = q->h;
  size_t plen = prefix ? 8 : 0;
  int slot = type == REC_SINGLE || type == REC_FIRST;
  uint64_t need = rec_size(plen + len);
  int rc = wait_room(q, need, slot, deadline);
  if (rc != 0)
    return rc;
  uint64_t w = atomic_load_explicit(&h->wstate, memory_order_relaxed), pos = st_pos(w);
  struct rec r = {(uint32_t)(plen + len), (uint8_t)type,
                  rec_check((uint32_t)(plen + len), (uint8_t)type), 0, id};
  ring_write(q, pos, &r, sizeof r);
  ring_write(q, pos + REC_HDR, prefix, plen);
  ring_write(q, pos + REC_HDR + plen, data, len);
  atomic_store(&h->wstate, st_make(st_cnt(w) + (uint64_t)slot, pos + need));
  if (atomic_load(&h->reader_waiting))
    mp_plat_pevent_set(q->not_empty);
  return 0;
}

/* A message larger than a chunk: FIRST (with the total length), MIDDLE..., LAST. */
static int put_parts(lq *q, const unsigned char *buf, size_t len, int64_t deadline) {
  struct qhdr *h = q->h;
  size_t chunk = (size_t)h->chunk, off = chunk - 8;
  uint64_t id = ++h->next_id, total = len;
  if (id == 0)
    id = ++h->next_id;
  atomic_store(&h->writing_id, id);
  int rc = put_record(q, REC_FIRST, id, &total, buf, off, deadline);
  while (rc == 0 && len - off > chunk) {
    rc = put_record(q, REC_MIDDLE, id, NULL, buf + off, chunk, deadline);
    off += chunk;
  }
  if (rc == 0)
    rc = put_record(q, REC_LAST, id, NULL, buf + off, len - off, deadline);
  atomic_store(&h->writing_id, 0);
  if (rc != 0)
    mp_plat_pevent_set(q->not_empty); /* its reader may be waiting for the next part */
  return rc;
}

/* ---- JoinableQueue bookkeeping (under jlock) ---------------------------------------- */

/* Messages started and not yet done (a count of at most 2^28 - 1). */
static uint64_t unfinished(lq *q) {
  return (st_cnt(atomic_load(&q->h->wstate)) - q->h->tasks_done) & CNT_MASK;
}

/* The holder died: its task_done is counted or not; make the event agree with the count. */
static void repair_tasks(lq *q) {
  if (unfinished(q) == 0)
    mp_plat_pevent_set(q->all_done);
}

/* Marks n messages done (task_done, or messages the queue itself discarded); all_done is set
 * when nothing is left unfinished. Puts never touch it: joiners clear it (under jlock) when
 * they find work left, and only a task_done can bring the count back to 0. */
static int tasks_finish(lq *q, uint64_t n, const char *what) {
  int rc = take(q, q->jlock, -1, repair_tasks);
  if (rc != 0)
    return rc;
  uint64_t left = unfinished(q);
  if (n > left) {
    rc = mp_set_error(MP_EINVAL, "%s: called more times than messages were put", what);
    n = left;
  }
  q->h->tasks_done = (q->h->tasks_done + n) & CNT_MASK;
  if (left == n)
    mp_plat_pevent_set(q->all_done);
  mp_plat_plock_release(q->jlock);
  return rc;
}

static int lq_put(void *impl, const void *buf, size_t len, int timeout_ms) {
  lq *q = impl;
  struct qhdr *h = q->h;
  if ((uint64_t)len > h->max_message)
    return mp_set_error(MP_EINVAL,
                        "mp_queue_put: a message of %zu bytes exceeds the queue's "
                        "maximum of %llu (mp_queue_opts.max_message)",
                        len, (unsigned long long)h->max_message);
  if (atomic_load(&h->closed))
    return closed_error("mp_queue_put");
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc != 0)
    return rc;
  rc = take(q, q->wlock, deadline, repair_writer);
  if (rc == MP_ETIMEDOUT)
    return mp_set_error(MP_EFULL, "mp_queue_put: another putter held the queue until the timeout");
  if (rc != 0)
    return rc;
  if (len <= h->chunk)
    rc = put_record(q, REC_SINGLE, 0, NULL, buf, len, deadline);
  else
    rc = put_parts(q, buf, len, deadline);
  mp_plat_plock_release(q->wlock);
  return rc;
}

/* ---- the reader side (holds rlock) ------------------------------------------------- */

/* A reader died holding the read lock: whatever it had not published stays queued; the
 * parts of a message it was assembling are skipped as orphans. */
static void repair_reader(lq *q) { atomic_store(&q->h->reader_waiting, 0); }

static int data_ready(lq *q) {
  struct qhdr *h = q->h;
  uint64_t r = atomic_load_explicit(&h->rstate, memory_order_relaxed);
  if (st_pos(h->rcache_w) != st_pos(r))
    return 1;
  h->rcache_w = atomic_load(&h->wstate);
  return st_pos(h->rcache_w) != st_pos(r);
}

/* Is the writer of message id gone? Called by its reader with nothing left to read. */
static int writer_gone(lq *q, uint64_t id, int probe_lock) {
  struct qhdr *h = q->h;
  if (atomic_load(&h->writing_id) != id)
    return !data_ready(q);
  if (!probe_lock)
    return 0;
  /* A live writer of a large message holds the write lock throughout. */
  int rc = mp_plat_plock_acquire(q->wlock, 0);
  if (rc != 0 && rc != MP_EOWNERDEAD)
    return 0;
  if (rc == MP_EOWNERDEAD)
    atomic_store(&h->writer_waiting, 0);
  if (atomic_load(&h->writing_id) == id)
    atomic_store(&h->writing_id, 0);
  mp_plat_plock_release(q->wlock);
  return !data_ready(q);
}

/* Waits for a record. Mid-message (id != 0) the caller's deadline is set aside: the
 * writer is alive and has room, so the rest comes; a dead writer is noticed instead. */
static int wait_data(lq *q, int64_t deadline, uint64_t id) {
  struct qhdr *h = q->h;
  for (int probe = 0;; probe = 0) {
    for (int i = 0; i < SPINS; i++) {
      if (data_ready(q))
        return 0;
      mp__cpu_relax();
    }
    if (id != 0 && writer_gone(q, id, 0))
      return ABANDONED;
    if (id == 0 && atomic_load(&h->closed) && !data_ready(q))
      return mp_set_error(MP_EEOF, "mp_queue_get: the queue is closed and drained");
    mp_plat_pevent_clear(q->not_empty);
    atomic_store(&h->reader_waiting, 1);
    int rc = 0;
    if (!data_ready(q) && !(id == 0 && atomic_load(&h->closed)) &&
        !(id != 0 && atomic_load(&h->writing_id) != id)) {
      rc = mp_plat_pevent_wait(q->not_empty, recheck_until(id ? -1 : deadline));
    }
    atomic_store(&h->reader_waiting, 0);
    if (rc == MP_ETIMEDOUT && id != 0)
      probe = 1;
    else if (rc == MP_ETIMEDOUT && passed(deadline) && !data_ready(q))
      return mp_set_error(MP_EEMPTY, "mp_queue_get: no message before the timeout");
    else if (rc != 0 && rc != MP_ETIMEDOUT)
      return rc;
    if (probe && !data_ready(q) && writer_gone(q, id, 1))
      return ABANDONED;
  }
}

/* Marks a record read and wakes a writer waiting for room. */
static void consume(lq *q, uint64_t size, int counted) {
  struct qhdr *h = q->h;
  uint64_t r = atomic_load_explicit(&h->rstate, memory_order_relaxed);
  atomic_store(&h->rstate, st_make(st_cnt(r) + (uint64_t)counted, st_pos(r) + size));
  if (atomic_load(&h->writer_waiting))
    mp_plat_pevent_set(q->not_full);
}

/* A header that cannot be one: drop everything queued rather than deliver garbage (in a
 * JoinableQueue the dropped messages count as done: nobody will ever get them). */
static int broken(lq *q, const char *why) {
  uint64_t w = atomic_load(&q->h->wstate);
  if (q->h->joinable)
    tasks_finish(q, st_queued(w, atomic_load(&q->h->rstate)), "mp_queue_get");
  atomic_store(&q->h->rstate, w);
  if (atomic_load(&q->h->writer_waiting))
    mp_plat_pevent_set(q->not_full);
  return mp_set_error(MP_EBROKEN,
                      "mp_queue_get: the queue's ring is corrupt (%s); its contents "
                      "were discarded",
                      why);
}

static int read_header(lq *q, struct rec *r) {
  struct qhdr *h = q->h;
  uint64_t rs = atomic_load_explicit(&h->rstate, memory_order_relaxed);
  ring_read(q, st_pos(rs), r, sizeof *r);
  if (r->type < REC_SINGLE || r->type > REC_LAST || r->check != rec_check(r->len, r->type) ||
      r->len > h->chunk)
    return broken(q, "bad record header");
  if (rec_size(r->len) > st_used(h->rcache_w, rs))
    return broken(q, "record longer than the data written");
  return 0;
}

struct partial {
  unsigned char *buf;
  uint64_t total, got, id;
};

static void drop(struct partial *p) {
  free(p->buf);
  memset(p, 0, sizeof *p);
}

/* Drops a message begun and never to be delivered; in a JoinableQueue it counts as done. */
static void discard(lq *q, struct partial *p) {
  if (p->buf != NULL && q->h->joinable)
    tasks_finish(q, 1, "mp_queue_get");
  drop(p);
}

/* Handles one record; returns 1 when *p holds a complete message. */
static int take_record(lq *q, const struct rec *r, struct partial *p) {
  uint64_t pos = st_pos(atomic_load_explicit(&q->h->rstate, memory_order_relaxed)) + REC_HDR;
  uint64_t size = rec_size(r->len);
  if (r->type == REC_SINGLE || r->type == REC_FIRST) {
    discard(q, p); /* a message begun and never finished: its writer abandoned it */
    uint64_t total = r->len;
    if (r->type == REC_FIRST) {
      ring_read(q, pos, &total, 8);
      if (r->len < 8 || total > q->h->max_message || total < r->len - 8)
        return broken(q, "bad message length");
      pos += 8;
    }
    p->buf = malloc(total ? (size_t)total : 1);
    if (p->buf == NULL) {
      consume(q, size, 1);
      if (q->h->joinable) /* dropped: nobody will get it (its other parts become orphans) */
        tasks_finish(q, 1, "mp_queue_get");
      return mp_set_error(MP_ENOMEM, "mp_queue_get: no memory for a %llu-byte message (dropped)",
                          (unsigned long long)total);
    }
    p->total = total;
    p->got = r->type == REC_FIRST ? r->len - 8 : r->len;
    p->id = r->id;
    ring_read(q, pos, p->buf, (size_t)p->got);
    consume(q, size, 1);
    return r->type == REC_SINGLE;
  }
  if (p->buf == NULL || r->id != p->id || p->got + r->len > p->total) {
    consume(q, size, 0); /* an orphan part of an abandoned message */
    return 0;
  }
  ring_read(q, pos, p->buf + p->got, r->len);
  p->got += r->len;
  consume(q, size, 0);
  if (r->type == REC_LAST && p->got != p->total)
    return broken(q, "message shorter than announced");
  return r->type == REC_LAST;
}

static int read_message(lq *q, void **out, size_t *outlen, int64_t deadline) {
  struct partial p = {NULL, 0, 0, 0};
  for (;;) {
    struct rec r;
    int rc = wait_data(q, deadline, p.buf ? p.id : 0);
    if (rc == ABANDONED) {
      discard(q, &p);
      continue;
    }
    if (rc == 0)
      rc = read_header(q, &r);
    if (rc == 0)
      rc = take_record(q, &r, &p);
    if (rc == 1) {
      *out = p.buf;
      *outlen = (size_t)p.total;
      return 0;
    }
    if (rc < 0) {
      discard(q, &p); /* its remaining parts become orphans: nobody will get it */
      return rc;
    }
  }
}

static int lq_get(void *impl, void **out, size_t *outlen, int timeout_ms) {
  lq *q = impl;
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  if (rc != 0)
    return rc;
  rc = take(q, q->rlock, deadline, repair_reader);
  if (rc == MP_ETIMEDOUT)
    return mp_set_error(MP_EEMPTY, "mp_queue_get: another getter held the queue until the timeout");
  if (rc != 0)
    return rc;
  rc = read_message(q, out, outlen, deadline);
  mp_plat_plock_release(q->rlock);
  return rc;
}

/* ---- the rest of the API ------------------------------------------------------------ */

static int lq_put_value(void *impl, const mp_value *v, int timeout_ms) {
  void *buf = NULL;
  size_t len = 0;
  int rc = mp_value_encode(v, &buf, &len);
  if (rc == 0)
    rc = lq_put(impl, buf, len, timeout_ms);
  mp_free(buf);
  return rc;
}

static int lq_get_value(void *impl, mp_value **v, int timeout_ms) {
  void *buf = NULL;
  size_t len = 0;
  int rc = lq_get(impl, &buf, &len, timeout_ms);
  if (rc == 0)
    rc = mp_value_decode(buf, len, v);
  free(buf);
  return rc;
}

/* rstate first: wstate only grows, so the difference is never negative. */
static uint64_t queued(lq *q) {
  uint64_t r = atomic_load(&q->h->rstate);
  return st_queued(atomic_load(&q->h->wstate), r);
}

static int lq_qsize(void *impl, size_t *n) {
  *n = (size_t)queued(impl);
  return 0;
}

static int lq_empty(void *impl) { return queued(impl) == 0; }

static int lq_full(void *impl) {
  lq *q = impl;
  return q->h->maxsize != 0 && queued(q) >= q->h->maxsize;
}

static int lq_close(void *impl) {
  lq *q = impl;
  atomic_store(&q->h->closed, 1);
  mp_plat_pevent_set(q->not_empty);
  mp_plat_pevent_set(q->not_full);
  return 0;
}

static int not_joinable(const char *what) {
  return mp_set_error(MP_ENOTSUP, "%s: the queue is not joinable (mp_joinable_queue_create)", what);
}

static int lq_task_done(void *impl) {
  lq *q = impl;
  return q->h->joinable ? tasks_finish(q, 1, "mp_queue_task_done")
                        : not_joinable("mp_queue_task_done");
}

/* Waits for all_done in slices: a task_done killed between its count and its event leaves
 * the event clear, and the next look under jlock sees the count. */
static int lq_join(void *impl, int timeout_ms) {
  lq *q = impl;
  if (!q->h->joinable)
    return not_joinable("mp_queue_join");
  int64_t deadline;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  while (rc == 0 || (rc == MP_ETIMEDOUT && !passed(deadline))) {
    if ((rc = take(q, q->jlock, deadline, repair_tasks)) != 0)
      break;
    uint64_t n = unfinished(q);
    if (n != 0)
      mp_plat_pevent_clear(q->all_done); /* a put made work since it was last set */
    mp_plat_plock_release(q->jlock);
    if (n == 0)
      return 0;
    rc = mp_plat_pevent_wait(q->all_done, recheck_until(deadline));
  }
  if (rc == MP_ETIMEDOUT)
    return mp_set_error(MP_ETIMEDOUT,
                        "mp_queue_join: messages were still unfinished at the timeout");
  return rc;
}

static void lq_free(void *impl) {
  lq *q = impl;
  if (q == NULL)
    return;
  mp_plat_plock_free(q->rlock);
  mp_plat_plock_free(q->wlock);
  mp_plat_plock_free(q->jlock);
  mp_plat_pevent_free(q->not_empty);
  mp_plat_pevent_free(q->not_full);
  mp_plat_pevent_free(q->all_done);
  if (q->shm)
    mp_plat_shm_free(q->shm);
  free(q);
}

static const mp__queue_ops lq_ops = {
    "queue", lq_put,   lq_get,       lq_put_value, lq_get_value, lq_qsize, lq_empty,
    lq_full, lq_close, lq_task_done, lq_join,      lq_free,      NULL,
};

/* ---- creation ----------------------------------------------------------------------- */

static int make_sync(lq *q, int joinable) {
  int rc = mp_plat_plock_create(&q->rlock);
  if (rc == 0)
    rc = mp_plat_plock_create(&q->wlock);
  if (rc == 0)
    rc = mp_plat_pevent_create(&q->not_empty);
  if (rc == 0)
    rc = mp_plat_pevent_create(&q->not_full);
  if (rc == 0 && joinable)
    rc = mp_plat_plock_create(&q->jlock);
  if (rc == 0 && joinable && (rc = mp_plat_pevent_create(&q->all_done)) == 0)
    rc = mp_plat_pevent_set(q->all_done);
  return rc;
}

static size_t ring_bytes(size_t want) {
  size_t n = RING_MIN;
  while (n < want)
    n <<= 1;
  return n;
}

int mp_queue_create_ex(mp_queue **out, const mp_queue_opts *opts) {
  mp_queue_opts o = {0, 0, 0, 0};
  if (out == NULL)
    return mp_set_error(MP_EINVAL, "mp_queue_create: q is NULL");
  if (opts)
    o = *opts;
  if (o.ring_size > RING_MAX)
    return mp_set_error(MP_EINVAL, "mp_queue_create: ring_size %zu exceeds 1 GiB", o.ring_size);
  size_t ring = ring_bytes(o.ring_size ? o.ring_size : MP_QUEUE_DEFAULT_RING);
  lq *q = calloc(1, sizeof *q);
  if (q == NULL)
    return mp_set_error(MP_ENOMEM, "mp_queue_create: out of memory");
  q->shm_size = HDR_SIZE + ring;
  int rc = mp_plat_shm_create(&q->shm, q->shm_size);
  if (rc == 0)
    rc = make_sync(q, o.joinable);
  if (rc == 0) {
    q->h = mp_plat_shm_addr(q->shm);
    q->ring = (unsigned char *)q->h + HDR_SIZE;
    q->h->joinable = o.joinable != 0;
    q->h->ring_size = ring;
    q->h->maxsize = o.maxsize;
    q->h->max_message = o.max_message ? o.max_message : MP_CONN_DEFAULT_MAX_MESSAGE;
    q->h->chunk = (ring / 4 - REC_HDR) & ~(uint64_t)7;
    q->h->magic = QMAGIC;
    rc = mp__queue_wrap(out, &lq_ops, q);
  }
  if (rc != 0)
    lq_free(q);
  return rc;
}

int mp_queue_create(mp_queue **q, size_t maxsize) {
  mp_queue_opts o = {maxsize, 0, 0, 0};
  return mp_queue_create_ex(q, &o);
}

int mp_joinable_queue_create(mp_queue **q, size_t maxsize) {
  mp_queue_opts o = {maxsize, 0, 0, 1};
  return mp_queue_create_ex(q, &o);
}

/* ---- passing to a spawned child ----------------------------------------------------- */
/* Blob: the segment size (8 bytes little-endian) and the joinable flag. Handles: the
 * segment, rlock, wlock, not_empty, not_full, then jlock and all_done if joinable. */

static int queue_export(void *obj, mp__xfer *out) {
  lq *q = mp__queue_impl(obj, &lq_ops);
  if (q == NULL)
    return mp_set_error(MP_ENOTSUP, "mp_args_add_queue: only a local queue can be passed to a "
                                    "spawned child (a manager's proxy connects by itself)");
  for (int i = 0; i < 8; i++)
    out->blob[i] = (unsigned char)((uint64_t)q->shm_size >> (8 * i));
  out->blob[8] = (unsigned char)q->h->joinable;
  out->blob_len = 9;
  mp_plat_handle hs[7] = {mp_plat_shm_handle(q->shm),
                          mp_plat_plock_handle(q->rlock),
                          mp_plat_plock_handle(q->wlock),
                          mp_plat_pevent_handle(q->not_empty),
                          mp_plat_pevent_handle(q->not_full),
                          MP_PLAT_INVALID,
                          MP_PLAT_INVALID};
  out->nhandles = q->h->joinable ? 7 : 5;
  if (q->h->joinable) {
    hs[5] = mp_plat_plock_handle(q->jlock);
    hs[6] = mp_plat_pevent_handle(q->all_done);
  }
  memcpy(out->handles, hs, out->nhandles * sizeof hs[0]);
  return 0;
}

/* Each import takes ownership of its handle; the ones not reached are closed here. */
static int import_parts(lq *q, const mp__xfer *in, int joinable) {
  const mp_plat_handle *h = in->handles;
  size_t i = 0;
  int rc = mp_plat_shm_import(&q->shm, h[i++], q->shm_size);
  if (rc == 0)
    rc = mp_plat_plock_import(&q->rlock, h[i++]);
  if (rc == 0)
    rc = mp_plat_plock_import(&q->wlock, h[i++]);
  if (rc == 0)
    rc = mp_plat_pevent_import(&q->not_empty, h[i++]);
  if (rc == 0)
    rc = mp_plat_pevent_import(&q->not_full, h[i++]);
  if (rc == 0 && joinable)
    rc = mp_plat_plock_import(&q->jlock, h[i++]);
  if (rc == 0 && joinable)
    rc = mp_plat_pevent_import(&q->all_done, h[i++]);
  for (; i < in->nhandles; i++)
    mp_plat_handle_close(h[i]);
  return rc;
}

static int queue_import(const mp__xfer *in, void **obj) {
  uint64_t size = 0;
  for (int i = 0; in->blob_len == 9 && i < 8; i++)
    size |= (uint64_t)in->blob[i] << (8 * i);
  int joinable = in->blob_len == 9 && in->blob[8] == 1;
  lq *q = NULL;
  int rc = 0;
  if (size <= HDR_SIZE || size > (uint64_t)(HDR_SIZE + RING_MAX) ||
      in->nhandles != (joinable ? 7u : 5u))
    rc = mp_set_error(MP_EPROTO, "queue import: malformed queue description");
  else if ((q = calloc(1, sizeof *q)) == NULL)
    rc = mp_set_error(MP_ENOMEM, "queue import: out of memory");
  if (rc != 0) {
    for (size_t i = 0; i < in->nhandles && i < MP_XFER_MAX_HANDLES; i++)
      mp_plat_handle_close(in->handles[i]);
    return rc;
  }
  q->shm_size = (size_t)size;
  rc = import_parts(q, in, joinable);
  if (rc == 0) {
    q->h = mp_plat_shm_addr(q->shm);
    q->ring = (unsigned char *)q->h + HDR_SIZE;
    if (q->h->magic != QMAGIC || HDR_SIZE + q->h->ring_size != size ||
        q->h->joinable != (uint32_t)joinable)
      rc = mp_set_error(MP_EPROTO, "queue import: the shared segment is not a queue");
  }
  mp_queue *box = NULL;
  if (rc == 0)
    rc = mp__queue_wrap(&box, &lq_ops, q);
  if (rc != 0)
    lq_free(q);
  else
    *obj = box;
  return rc;
}

static void queue_release(void *obj) { mp_queue_free(obj); }

const mp__xfer_type mp__queue_xfer = {MP_XFER_QUEUE, "queue", queue_export, queue_import,
                                      queue_release};

int mp_args_add_queue(mp_args *args, mp_queue *q) {
  if (q == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_add_queue: the queue is NULL");
  /* Checked here, not only at export: a fork child would share the handle's connections. */
  if (args != NULL && mp__queue_impl(q, &lq_ops) == NULL)
    return mp_set_error(MP_ENOTSUP, "mp_args_add_queue: only a local queue can be passed to a "
                                    "child (a manager's proxy or a Redis queue is opened by the "
                                    "child itself)");
  return mp__args_add_object(args, &mp__queue_xfer, q);
}

int mp_args_get_queue(const mp_args *args, size_t i, mp_queue **q) {
  return mp__args_get_object(args, i, &mp__queue_xfer, (void **)q);
}
