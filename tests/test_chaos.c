/* Chaos: six processes share one process-shared object (lock, semaphore, event, Value, queue,
 * JoinableQueue) while the test kills three of them (SIGKILL / TerminateProcess) at random
 * moments: holders, waiters, and waiters just woken (the test releases the object and kills a
 * waiter at once, the moment a lost wake-up needs). Then it checks what the survivors must
 * see: nobody stays blocked on a free object, every timed call returns within its timeout,
 * counts are what the dead can account for, messages arrive whole, in order, never twice.
 *
 * Every trial is bounded in time and seeded. A failing trial prints its seed; rerun it with
 * MP_CHAOS_SEED=<seed> MP_CHAOS_TRIALS=1 (the kill schedule repeats; the timing cannot).
 * MP_CHAOS_TRIALS=<n> sets the trials per object (CI: see trials_default), MP_CHAOS_ONLY=<name>
 * picks one object, MP_CHAOS_HANG_MS how long a survivor may stay blocked (default 15000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

enum { WORKERS = 6, VICTIMS = 3, ROUNDS = 4 };
enum { MAX_SEQ = 1 << 14 }; /* messages per producer per trial, at most */
#define SLACK_MS 3000       /* how late a timed call may return on a loaded machine */
#define FINAL_MS 5000       /* a survivor's last acquire: the object is free by then */

/* ---- seeded randomness (splitmix64) ------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static int rng_below(uint64_t *s, int n) { return (int)(rng_next(s) % (uint64_t)n); }

/* A timeout for a worker's blocking call: mostly MP_FOREVER (a lost wake-up then shows as a
 * hang), sometimes 200..1500 ms (checks that timed calls return on time). */
static int pick_timeout(uint64_t *s) {
  return rng_below(s, 4) ? MP_FOREVER : 200 + rng_below(s, 1300);
}

/* ---- the board: what every process says about itself, in shared memory ------------------- */

enum { S_START, S_IDLE, S_WAITING, S_HOLDING, S_RELEASING, S_DONE };
static const char *state_name[] = {"starting", "idle", "waiting", "holding", "releasing", "done"};

/* Exit codes of a worker that saw something wrong (detail in its slot). */
enum {
  E_ARGS = 10,    /* could not read its arguments */
  E_RC = 11,      /* a call returned an unexpected code (detail: the code) */
  E_TIMING = 12,  /* a timed call returned early or far too late (detail: elapsed ms) */
  E_EXCL = 13,    /* two holders of a lock at once */
  E_FINAL = 14,   /* the last acquire of a free object timed out */
  E_CORRUPT = 15, /* a message arrived changed */
  E_ORDER = 16,   /* a message arrived twice or out of order (detail: seq) */
};

struct slot {
  int32_t state, failure, round_waiting, round_seen;
  int32_t ticket; /* order of arrival among waiters: the kernel wakes the oldest first */
  int64_t count, detail;
};

struct board {
  int32_t stop, round, owner, tickets;
  struct slot s[WORKERS];
  uint8_t seen[WORKERS][MAX_SEQ / 8]; /* queue: which (producer, seq) arrived */
};

static int32_t ld(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static void st(int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }

static int wfail(struct slot *s, int code, int64_t detail) {
  s->detail = detail;
  st(&s->failure, code);
  return code;
}

static void spin_us(int us) {
  uint64_t until = mp_monotonic_ns() + (uint64_t)us * 1000u;
  while (mp_monotonic_ns() < until) {
  }
}

/* A timed call that gave up must have waited its timeout, and not much longer. */
static int timing_ok(struct slot *s, int timeout_ms, uint64_t t0) {
  int64_t ms = (int64_t)((mp_monotonic_ns() - t0) / 1000000u);
  if (timeout_ms == MP_FOREVER || ms + 1 < timeout_ms || ms > timeout_ms + SLACK_MS)
    return wfail(s, E_TIMING, ms);
  return 0;
}

/* What every worker receives: the board, the object, its index and the trial's seed. */
struct wctx {
  struct board *b;
  struct slot *me;
  int idx;
  uint64_t rng;
  int64_t param;
};

static int wctx_init(mp_args *a, struct wctx *w) {
  mp_shm *m = NULL;
  void *addr = NULL;
  int64_t idx = 0, seed = 0;
  if (mp_args_get_shm(a, 0, &m) || mp_shm_map(m, &addr, NULL) || mp_args_get_int(a, 2, &idx) ||
      mp_args_get_int(a, 3, &seed) || mp_args_get_int(a, 4, &w->param) || idx < 0 || idx >= WORKERS)
    return E_ARGS;
  w->b = addr;
  w->idx = (int)idx;
  w->me = &w->b->s[idx];
  w->rng = (uint64_t)seed * 31 + (uint64_t)idx;
  st(&w->me->state, S_IDLE);
  return 0;
}

/* ---- workers ------------------------------------------------------------------------------ */

/* Says "waiting" and takes a ticket in the queue of waiters. */
static void announce_wait(struct wctx *w) {
  st(&w->me->ticket, __atomic_fetch_add(&w->b->tickets, 1, __ATOMIC_SEQ_CST));
  st(&w->me->state, S_WAITING);
}

/* A lock or a semaphore, as a worker uses it. */
struct holdable {
  int (*get)(const mp_args *a, void **obj);
  int (*acquire)(void *obj, int timeout_ms);
  int (*release)(void *obj);
  int lock;         /* one holder at a time (checked on the board), and MP_EOWNERDEAD means taken */
  int last_timeout; /* the survivors' last acquire (see hold_worker) */
};

/* Takes the object, holds it a moment, gives it back; a lock checks that nobody else holds
 * it meanwhile. Returns 0, MP_ETIMEDOUT, or a failure exit code. */
static int hold_round(struct wctx *w, void *obj, const struct holdable *h, int timeout_ms) {
  announce_wait(w);
  uint64_t t0 = mp_monotonic_ns();
  int rc = h->acquire(obj, timeout_ms);
  if (rc == MP_ETIMEDOUT)
    return timing_ok(w->me, timeout_ms, t0) ? E_TIMING : MP_ETIMEDOUT;
  if (rc != 0 && !(h->lock && rc == MP_EOWNERDEAD))
    return wfail(w->me, E_RC, rc);
  st(&w->me->state, S_HOLDING);
  if (rc == MP_EOWNERDEAD)
    st(&w->b->owner, 0); /* the dead holder's mark */
  if (h->lock && ld(&w->b->owner) != 0)
    return wfail(w->me, E_EXCL, ld(&w->b->owner));
  if (h->lock)
    st(&w->b->owner, w->idx + 1);
  spin_us(rng_below(&w->rng, 30));
  if (h->lock)
    st(&w->b->owner, 0);
  st(&w->me->state, S_RELEASING);
  if ((rc = h->release(obj)) != 0)
    return wfail(w->me, E_RC, rc);
  st(&w->me->state, S_IDLE);
  w->me->count++;
  return 0;
}

/* Rounds until the parent says stop, then one last round: nobody holds a lock for long any
 * more, so it must come within FINAL_MS; a semaphore's last unit may have died with a
 * worker, so there the parent decides when to add one (MP_FOREVER). */
static int hold_worker(mp_args *a, const struct holdable *h) {
  struct wctx w;
  void *obj = NULL;
  int rc = wctx_init(a, &w);
  if (rc != 0 || h->get(a, &obj) != 0)
    return E_ARGS;
  while (!ld(&w.b->stop))
    if ((rc = hold_round(&w, obj, h, w.param ? MP_FOREVER : pick_timeout(&w.rng))) > 0)
      return rc;
  rc = hold_round(&w, obj, h, h->last_timeout);
  if (rc == MP_ETIMEDOUT)
    return wfail(w.me, E_FINAL, 0);
  st(&w.me->state, S_DONE);
  return rc;
}

static int get_plock(const mp_args *a, void **l) { return mp_args_get_plock(a, 1, (mp_plock **)l); }
static int get_psem(const mp_args *a, void **s) { return mp_args_get_psem(a, 1, (mp_psem **)s); }
static int plock_take(void *l, int timeout_ms) { return mp_plock_acquire(l, timeout_ms); }
static int plock_release(void *l) { return mp_plock_release(l); }
static int psem_acquire(void *s, int timeout_ms) { return mp_psem_acquire(s, timeout_ms); }
static int psem_release(void *s) { return mp_psem_release(s); }

static int lock_worker(mp_args *a) {
  static const struct holdable h = {get_plock, plock_take, plock_release, 1, FINAL_MS};
  return hold_worker(a, &h);
}

static int sem_worker(mp_args *a) {
  static const struct holdable h = {get_psem, psem_acquire, psem_release, 0, MP_FOREVER};
  return hold_worker(a, &h);
}

/* Event: param 1 makes a setter (sets when the parent asks), 0 a waiter (waits once per
 * round, then until the parent starts the next round). Polling the board is the test's own
 * coordination, not the object under test. */
static int event_setter(struct wctx *w, mp_pevent *e) {
  int32_t done = 0;
  while (!ld(&w->b->stop)) {
    int32_t req = ld(&w->me->round_waiting); /* a setter's field: the parent's request */
    if (req == done) {
      mp_sleep_ms(1);
      continue;
    }
    st(&w->me->state, S_HOLDING);
    int rc = mp_pevent_set(e);
    st(&w->me->state, S_IDLE);
    if (rc != 0)
      return wfail(w->me, E_RC, rc);
    done = req;
    w->me->count++;
  }
  return 0;
}

static int event_waiter(struct wctx *w, mp_pevent *e) {
  for (;;) {
    int32_t r = ld(&w->b->round);
    if (ld(&w->b->stop))
      return 0;
    if (ld(&w->me->round_seen) == r) {
      mp_sleep_ms(1);
      continue;
    }
    st(&w->me->round_waiting, r);
    st(&w->me->state, S_WAITING);
    int timeout = pick_timeout(&w->rng);
    uint64_t t0 = mp_monotonic_ns();
    int rc = mp_pevent_wait(e, timeout);
    st(&w->me->state, S_IDLE);
    if (rc == 0)
      st(&w->me->round_seen, r);
    else if (rc != MP_ETIMEDOUT)
      return wfail(w->me, E_RC, rc);
    else if (timing_ok(w->me, timeout, t0))
      return E_TIMING;
  }
}

static int event_worker(mp_args *a) {
  struct wctx w;
  mp_pevent *e = NULL;
  int rc = wctx_init(a, &w);
  if (rc != 0 || mp_args_get_pevent(a, 1, &e) != 0)
    return E_ARGS;
  rc = w.param ? event_setter(&w, e) : event_waiter(&w, e);
  st(&w.me->state, S_DONE);
  return rc;
}

static int shared_worker(mp_args *a) {
  struct wctx w;
  mp_shared *v = NULL;
  int rc = wctx_init(a, &w);
  if (rc != 0 || mp_args_get_shared(a, 1, &v) != 0)
    return E_ARGS;
  while (!ld(&w.b->stop)) {
    st(&w.me->state, S_WAITING); /* from here until count++ the add may or may not be done */
    if ((rc = mp_shared_add_int(v, 0, 1, NULL)) != 0)
      return wfail(w.me, E_RC, rc);
    w.me->count++;
    st(&w.me->state, S_IDLE);
  }
  st(&w.me->state, S_DONE);
  return 0;
}

/* Queue messages: a header, then len bytes that the checksum covers. */
struct msg {
  uint32_t producer, seq, len, sum;
};
#define PILL 255u

static uint32_t msg_sum(const struct msg *m, const unsigned char *payload) {
  uint32_t h = 2166136261u ^ m->producer ^ (m->seq << 8) ^ (m->len << 16);
  for (uint32_t i = 0; i < m->len; i++)
    h = (h ^ payload[i]) * 16777619u;
  return h;
}

static size_t make_msg(unsigned char *buf, uint32_t producer, uint32_t seq, uint32_t len) {
  struct msg m = {producer, seq, len, 0};
  for (uint32_t i = 0; i < len; i++)
    buf[sizeof m + i] = (unsigned char)(seq * 7 + i);
  m.sum = msg_sum(&m, buf + sizeof m);
  memcpy(buf, &m, sizeof m);
  return sizeof m + len;
}

/* Checks one message and marks it seen; last[] is this reader's order per producer. */
static int check_msg(struct board *b, struct slot *me, const void *buf, size_t len,
                     int64_t last[WORKERS], uint32_t *producer) {
  struct msg m;
  if (len < sizeof m)
    return wfail(me, E_CORRUPT, (int64_t)len);
  memcpy(&m, buf, sizeof m);
  *producer = m.producer;
  if (m.len != len - sizeof m || m.sum != msg_sum(&m, (const unsigned char *)buf + sizeof m))
    return wfail(me, E_CORRUPT, (int64_t)len);
  if (m.producer == PILL)
    return 0;
  if (m.producer >= WORKERS || m.seq >= MAX_SEQ || (int64_t)m.seq <= last[m.producer])
    return wfail(me, E_ORDER, m.seq);
  last[m.producer] = m.seq;
  uint8_t bit = (uint8_t)(1u << (m.seq % 8));
  if (__atomic_fetch_or(&b->seen[m.producer][m.seq / 8], bit, __ATOMIC_SEQ_CST) & bit)
    return wfail(me, E_ORDER, m.seq);
  return 0;
}

static int producer(struct wctx *w, mp_queue *q) {
  static unsigned char buf[sizeof(struct msg) + 3000];
  for (uint32_t seq = 0; seq < MAX_SEQ && !ld(&w->b->stop);) {
    /* Mostly small messages; some larger than a quarter of the ring travel in parts. */
    uint32_t len = (uint32_t)(rng_below(&w->rng, 4) ? rng_below(&w->rng, 200)
                                                    : 1000 + rng_below(&w->rng, 2000));
    size_t n = make_msg(buf, (uint32_t)w->idx, seq, len);
    int timeout = pick_timeout(&w->rng);
    st(&w->me->state, S_WAITING); /* from here until count++ the message may have landed */
    uint64_t t0 = mp_monotonic_ns();
    int rc = mp_queue_put(q, buf, n, timeout);
    if (rc == 0) {
      w->me->count = ++seq;
    } else if (rc != MP_EFULL) {
      return wfail(w->me, E_RC, rc);
    } else if (timing_ok(w->me, timeout, t0)) {
      return E_TIMING;
    }
    st(&w->me->state, S_IDLE);
  }
  return 0;
}

/* Gets until it receives a pill; joinable queues get task_done for every message. */
static int consumer(struct wctx *w, mp_queue *q, int joinable) {
  int64_t last[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    last[i] = -1;
  for (;;) {
    void *buf = NULL;
    size_t len = 0;
    uint32_t from = 0;
    int timeout = pick_timeout(&w->rng);
    st(&w->me->state, S_WAITING); /* from here until the state changes it may hold a message */
    uint64_t t0 = mp_monotonic_ns();
    int rc = mp_queue_get(q, &buf, &len, timeout);
    if (rc == MP_EEMPTY) {
      if (timing_ok(w->me, timeout, t0))
        return E_TIMING;
      continue;
    }
    if (rc != 0)
      return wfail(w->me, E_RC, rc);
    rc = check_msg(w->b, w->me, buf, len, last, &from);
    mp_free(buf);
    if (rc != 0)
      return rc;
    w->me->count++;
    st(&w->me->state, S_HOLDING); /* received and recorded, task not yet done */
    if (joinable) {
      st(&w->me->state, S_RELEASING);
      if ((rc = mp_queue_task_done(q)) != 0)
        return wfail(w->me, E_RC, rc);
    }
    st(&w->me->state, S_IDLE);
    if (from == PILL)
      return 0;
  }
}

static int queue_worker(mp_args *a) {
  struct wctx w;
  mp_queue *q = NULL;
  int rc = wctx_init(a, &w);
  if (rc != 0 || mp_args_get_queue(a, 1, &q) != 0)
    return E_ARGS;
  /* param: bit 0 joinable, bit 1 this worker produces */
  rc = (w.param & 2) ? producer(&w, q) : consumer(&w, q, (int)(w.param & 1));
  st(&w.me->state, S_DONE);
  return rc;
}

/* ---- the parent's side of a trial -------------------------------------------------------- */

struct trial {
  const char *what;
  uint64_t seed, rng;
  int hang_ms;
  mp_shm *shm;
  struct board *b;
  mp_process *p[WORKERS];
  int dead[WORKERS];      /* killed by the test */
  int died_in[WORKERS];   /* the state it was killed in */
  int64_t param[WORKERS]; /* per-worker parameter */
  int waited;             /* units the parent added for ones the dead may have taken */
  char why[768];          /* the first failure, empty if none */
};

#define T_FAIL(t, ...)                                                                             \
  do {                                                                                             \
    if ((t)->why[0] == '\0')                                                                       \
      snprintf((t)->why, sizeof(t)->why, __VA_ARGS__);                                             \
  } while (0)

static void trial_start(struct trial *t, mp_target_fn fn, void (*add_object)(mp_args *, void *),
                        void *obj) {
  mp_args *a = NULL;
  for (int i = 0; i < WORKERS; i++) {
    assert_mp_ok(mp_args_create(&a));
    assert_mp_ok(mp_args_add_shm(a, t->shm));
    add_object(a, obj);
    assert_mp_ok(mp_args_add_int(a, i));
    assert_mp_ok(mp_args_add_int(a, (int64_t)t->seed));
    assert_mp_ok(mp_args_add_int(a, t->param[i]));
    assert_mp_ok(mp_process_create(&t->p[i], fn, a, NULL));
    assert_mp_ok(mp_process_start(t->p[i]));
    mp_args_free(a);
  }
  /* Every worker says it runs before the chaos starts (spawn takes a while). */
  uint64_t until = mp_monotonic_ns() + 60000000000u;
  for (int i = 0; i < WORKERS; i++)
    while (ld(&t->b->s[i].state) == S_START && mp_monotonic_ns() < until)
      mp_sleep_ms(1);
  for (int i = 0; i < WORKERS; i++)
    if (ld(&t->b->s[i].state) == S_START)
      T_FAIL(t, "worker %d did not start within 60 s", i);
}

/* An alive worker, preferably one in state `want` (seen within `wait_ms`), else any. */
static int pick_victim(struct trial *t, int want, int wait_ms,
                       int (*eligible)(struct trial *, int)) {
  uint64_t until = mp_monotonic_ns() + (uint64_t)wait_ms * 1000000u;
  int start = rng_below(&t->rng, WORKERS);
  while (want >= 0) {
    for (int k = 0; k < WORKERS; k++) {
      int i = (start + k) % WORKERS;
      if (!t->dead[i] && (!eligible || eligible(t, i)) && ld(&t->b->s[i].state) == want)
        return i;
    }
    if (mp_monotonic_ns() >= until)
      break;
    spin_us(50);
  }
  for (int k = 0; k < WORKERS; k++) {
    int i = (start + k) % WORKERS;
    if (!t->dead[i] && (!eligible || eligible(t, i)))
      return i;
  }
  return -1;
}

/* The waiter the kernel wakes first (it queues waiters in arrival order), else anyone. */
static int oldest_waiter(struct trial *t) {
  int best = -1;
  for (int i = 0; i < WORKERS; i++)
    if (!t->dead[i] && ld(&t->b->s[i].state) == S_WAITING &&
        (best < 0 || ld(&t->b->s[i].ticket) < ld(&t->b->s[best].ticket)))
      best = i;
  return best >= 0 ? best : pick_victim(t, -1, 0, NULL);
}

static void kill_worker(struct trial *t, int i) {
  if (i < 0 || t->dead[i])
    return;
  assert_mp_ok(mp_process_kill(t->p[i]));
  if (mp_process_join(t->p[i], 30000) != 0)
    T_FAIL(t, "killed worker %d did not die within 30 s", i);
  t->dead[i] = 1;
  t->died_in[i] = ld(&t->b->s[i].state);
  int code = 0;
  struct slot *s = &t->b->s[i];
  if (mp_process_exitcode(t->p[i], &code) == 0 && code > 0)
    T_FAIL(t, "worker %d had exited with %d before the kill (failure %d, detail %lld)", i, code,
           s->failure, (long long)s->detail);
}

/* Waits until `n` alive workers are in `state`, at most wait_ms; then lets them fall asleep. */
static void await_state(struct trial *t, int state, int n, int wait_ms) {
  uint64_t until = mp_monotonic_ns() + (uint64_t)wait_ms * 1000000u;
  for (;;) {
    int seen = 0;
    for (int i = 0; i < WORKERS; i++)
      seen += !t->dead[i] && ld(&t->b->s[i].state) == state;
    if (seen >= n || mp_monotonic_ns() >= until)
      break;
    spin_us(50);
  }
  spin_us(200);
}

/* Waits up to wait_ms in all for the survivors to exit; returns how many still run. */
static int wait_survivors(struct trial *t, int wait_ms) {
  uint64_t until = mp_monotonic_ns() + (uint64_t)wait_ms * 1000000u;
  int running = 0;
  for (int i = 0; i < WORKERS; i++) {
    int64_t left = (int64_t)(until - mp_monotonic_ns()) / 1000000;
    running += !t->dead[i] && mp_process_join(t->p[i], left > 0 ? (int)left : 0) != 0;
  }
  return running;
}

/* Joins the survivors within hang_ms; a survivor still blocked then is the failure this file
 * exists for (describe says what the object looks like then). Returns the number stuck. */
static int join_survivors(struct trial *t, void (*describe)(void *obj, char *buf, size_t size),
                          void *obj) {
  int stuck = wait_survivors(t, t->hang_ms);
  char what[128] = "";
  if (stuck > 0 && describe)
    describe(obj, what, sizeof what);
  for (int i = 0; i < WORKERS; i++) {
    if (t->dead[i])
      continue;
    struct slot *s = &t->b->s[i];
    int code = -1;
    if (mp_process_join(t->p[i], 0) != 0) {
      T_FAIL(t, "survivor %d still blocked (%s) after %d ms%s", i, state_name[ld(&s->state)],
             t->hang_ms, what);
      mp_process_kill(t->p[i]);
      mp_process_join(t->p[i], 30000);
    } else if (mp_process_exitcode(t->p[i], &code) == 0 && code != 0) {
      T_FAIL(t, "survivor %d exited with %d (failure %d, detail %lld)", i, code, s->failure,
             (long long)s->detail);
    }
  }
  return stuck;
}

static void trial_end(struct trial *t) {
  for (int i = 0; i < WORKERS; i++)
    mp_process_free(t->p[i]);
}

/* The kill schedule of a lock-like object: three victims, each chosen one of three ways. */
struct lockish {
  int (*take)(void *obj, int timeout_ms); /* 0 or MP_EOWNERDEAD: taken (all free units) */
  void (*give)(void *obj);                /* gives one back */
  void (*give_rest)(void *obj);           /* gives back what the parent still holds */
  void *obj;
  int units;      /* a semaphore's units, which the dead can keep; 0 for a (robust) lock */
  int32_t *owner; /* the board's holder mark, cleared by whoever takes over from the dead */
};

/* Units of a semaphore that dead workers may hold. */
static int units_maybe_dead(struct trial *t) {
  int n = 0;
  for (int i = 0; i < WORKERS; i++)
    n += t->dead[i] && t->died_in[i] != S_IDLE;
  return n;
}

static void chaos_kills(struct trial *t, const struct lockish *o) {
  for (int k = 0; k < VICTIMS; k++) {
    spin_us(rng_below(&t->rng, 3000));
    int how = rng_below(&t->rng, 3);
    if (how == 1 && o->units > 0 && units_maybe_dead(t) >= o->units)
      how = 0; /* the parent might wait for a unit that no one alive holds */
    switch (how) {
    case 0: /* whoever, whenever */ kill_worker(t, pick_victim(t, -1, 0, NULL)); break;
    case 1: { /* a waiter just woken: hold, let them queue, release, kill one (retaking first,
               * sometimes: a lock's wake-up is lost when someone else took it meanwhile) */
      int rc = o->take(o->obj, t->hang_ms);
      if (rc != 0 && rc != MP_EOWNERDEAD) {
        T_FAIL(t, "the parent could not take the object within %d ms (%s)", t->hang_ms,
               mp_strerror(rc));
        return;
      }
      if (rc == MP_EOWNERDEAD && o->owner)
        st(o->owner, 0);
      await_state(t, S_WAITING, 2, 20);
      o->give(o->obj);
      rc = rng_below(&t->rng, 2) ? o->take(o->obj, 0) : MP_ETIMEDOUT;
      if (rc == MP_EOWNERDEAD && o->owner)
        st(o->owner, 0);
      kill_worker(t, oldest_waiter(t));
      if (rc == 0 || rc == MP_EOWNERDEAD)
        o->give(o->obj);
      o->give_rest(o->obj);
      break;
    }
    default: /* a holder */ kill_worker(t, pick_victim(t, S_HOLDING, 5, NULL)); break;
    }
  }
}

/* Lock and semaphore workers wait without a timeout in half the trials (param 1): a waiter
 * whose timeout ends would take a unit or lock that a lost wake-up left free, and hide it. */
static void forever_or_mixed(struct trial *t) {
  int forever = rng_below(&t->rng, 2);
  for (int i = 0; i < WORKERS; i++)
    t->param[i] = forever;
}

/* ---- lock --------------------------------------------------------------------------------- */

static void plock_give(void *l) { mp_plock_release(l); }
static void give_nothing(void *l) { (void)l; }
static void add_plock(mp_args *a, void *l) { assert_mp_ok(mp_args_add_plock(a, l)); }

/* What a stuck survivor's report says about the object. */
static void describe_lock(void *l, char *buf, size_t size) {
  int rc = mp_plock_acquire(l, 0);
  if (rc == 0 || rc == MP_EOWNERDEAD)
    mp_plock_release(l);
  snprintf(buf, size, " although the lock is %s", rc == 0 || rc == MP_EOWNERDEAD ? "free" : "held");
}

static void lock_trial(struct trial *t) {
  mp_plock *l = NULL;
  assert_mp_ok(mp_plock_create(&l));
  forever_or_mixed(t);
  trial_start(t, lock_worker, add_plock, l);
  struct lockish o = {plock_take, plock_give, give_nothing, l, 0, &t->b->owner};
  chaos_kills(t, &o);
  st(&t->b->stop, 1);
  join_survivors(t, describe_lock, l);
  int rc = mp_plock_acquire(l, 1000);
  if (rc != 0 && rc != MP_EOWNERDEAD)
    T_FAIL(t, "after the trial the lock could not be taken: %s", mp_strerror(rc));
  else
    mp_plock_release(l);
  trial_end(t);
  mp_plock_free(l);
}

/* ---- semaphore ----------------------------------------------------------------------------- */

/* The parent takes every free unit, so that the workers queue up behind it. */
struct sem_hold {
  mp_psem *s;
  int held;
};

static int psem_take(void *obj, int timeout_ms) {
  struct sem_hold *h = obj;
  int rc = mp_psem_acquire(h->s, timeout_ms);
  while (rc == 0 && ++h->held && mp_psem_acquire(h->s, 0) == 0) {
  }
  return rc;
}

static void psem_give(void *obj) {
  struct sem_hold *h = obj;
  if (h->held > 0 && mp_psem_release(h->s) == 0)
    h->held--;
}

static void psem_give_rest(void *obj) {
  struct sem_hold *h = obj;
  while (h->held > 0)
    psem_give(h);
}
static void add_psem(mp_args *a, void *s) { assert_mp_ok(mp_args_add_psem(a, s)); }

/* Drains the units that are free now. */
static int sem_drain(mp_psem *s) {
  int n = 0;
  while (mp_psem_acquire(s, 0) == 0)
    n++;
  return n;
}

static void describe_sem(void *s, char *buf, size_t size) {
  unsigned n = 0;
  mp_psem_get_value(s, &n);
  snprintf(buf, size, " while the semaphore has %u free unit(s)", n);
}

static void sem_trial(struct trial *t) {
  /* Bounded or not; a bounded one leaves room for the parent's replacements below. */
  unsigned initial = 1 + (unsigned)rng_below(&t->rng, 2);
  unsigned max = rng_below(&t->rng, 2) ? initial + VICTIMS : MP_SEM_UNBOUNDED;
  mp_psem *s = NULL;
  assert_mp_ok(mp_psem_create(&s, initial, max));
  forever_or_mixed(t);
  trial_start(t, sem_worker, add_psem, s);
  struct sem_hold h = {s, 0};
  struct lockish o = {psem_take, psem_give, psem_give_rest, &h, (int)initial, NULL};
  chaos_kills(t, &o);
  /* A dead holder keeps its unit: the parent replaces units so that one is left. One killed
   * inside acquire or release may have taken or given one: while the survivors still run
   * with no unit free, the parent adds one more. Adding never hides a lost wake-up (that
   * needs a free unit); a free unit that survivors sleep through fails the trial below. */
  int sure = 0, maybe = 0;
  for (int i = 0; i < WORKERS; i++) {
    sure += t->dead[i] && t->died_in[i] == S_HOLDING;
    maybe += t->dead[i] && (t->died_in[i] == S_WAITING || t->died_in[i] == S_RELEASING);
  }
  int least = (int)initial - sure - maybe, added = (int)initial - sure < 1 ? 1 : 0;
  st(&t->b->stop, 1);
  if (added)
    assert_mp_ok(mp_psem_release(s));
  for (int spare = maybe; spare > 0 && wait_survivors(t, 200) > 0; spare--) {
    unsigned free_units = 0;
    assert_mp_ok(mp_psem_get_value(s, &free_units));
    if (free_units > 0)
      break; /* the survivors must take it (looking leaves no wake-up behind, taking would) */
    assert_mp_ok(mp_psem_release(s));
    added++;
    t->waited++;
  }
  if (join_survivors(t, describe_sem, s) == 0) {
    unsigned value = 0;
    assert_mp_ok(mp_psem_get_value(s, &value));
    int n = sem_drain(s);
    if (n != (int)value)
      T_FAIL(t, "get_value said %u unit(s), %d could be taken", value, n);
    if (n < least + added || n > least + added + maybe)
      T_FAIL(t, "the semaphore holds %d unit(s) after the trial; %d to %d expected", n,
             least + added, least + added + maybe);
    for (int i = 0; i < n; i++)
      mp_psem_release(s);
    int extra = 0;
    while (max != MP_SEM_UNBOUNDED && extra <= (int)max && mp_psem_release(s) == 0)
      extra++;
    if (max != MP_SEM_UNBOUNDED && n + extra != (int)max)
      T_FAIL(t, "a bounded semaphore (max %u) took %d releases above %d units", max, extra, n);
  }
  trial_end(t);
  mp_psem_free(s);
}

/* ---- event --------------------------------------------------------------------------------- */

static void add_pevent(mp_args *a, void *e) { assert_mp_ok(mp_args_add_pevent(a, e)); }
static int is_waiter(struct trial *t, int i) { return t->param[i] == 0; }
static int is_setter(struct trial *t, int i) { return t->param[i] != 0; }

/* Every alive waiter must come back from its wait of round r while the event is set. */
static void await_round_seen(struct trial *t, mp_pevent *e, int32_t r) {
  uint64_t until = mp_monotonic_ns() + (uint64_t)t->hang_ms * 1000000u;
  for (int i = 0; i < WORKERS; i++) {
    if (!is_waiter(t, i))
      continue;
    while (!t->dead[i] && ld(&t->b->s[i].round_seen) != r && mp_monotonic_ns() < until)
      mp_sleep_ms(1);
    if (!t->dead[i] && ld(&t->b->s[i].round_seen) != r) {
      T_FAIL(t, "round %d: waiter %d (%s) did not wake within %d ms; the event is %s", r, i,
             state_name[ld(&t->b->s[i].state)], t->hang_ms, mp_pevent_is_set(e) ? "set" : "clear");
      kill_worker(t, i); /* stuck for good: end it so the trial can finish */
    }
  }
}

static void event_round(struct trial *t, mp_pevent *e, int32_t r, int *kills) {
  assert_mp_ok(mp_pevent_clear(e));
  st(&t->b->round, r);
  /* Let the waiters of this round block (they may not all get there: no matter). */
  uint64_t until = mp_monotonic_ns() + 2000000000u;
  for (int i = 0; i < WORKERS; i++)
    while (is_waiter(t, i) && !t->dead[i] && mp_monotonic_ns() < until &&
           !(ld(&t->b->s[i].round_waiting) == r && ld(&t->b->s[i].state) == S_WAITING))
      mp_sleep_ms(1);
  spin_us(rng_below(&t->rng, 300));
  int how = rng_below(&t->rng, 3), kill_now = *kills < VICTIMS && rng_below(&t->rng, 4) != 0;
  int setter = pick_victim(t, -1, 0, is_setter);
  if (how == 0 || setter < 0) {
    assert_mp_ok(mp_pevent_set(e)); /* the parent sets; kill a waiter as it wakes */
    if (kill_now)
      kill_worker(t, pick_victim(t, S_WAITING, 0, is_waiter));
  } else {
    st(&t->b->s[setter].round_waiting, r); /* asks this one setter to set */
    if (kill_now && how == 1) {            /* the setter, somewhere around its set */
      uint64_t wait_until = mp_monotonic_ns() + 100000000u;
      while (ld(&t->b->s[setter].state) != S_HOLDING && !mp_pevent_is_set(e) &&
             mp_monotonic_ns() < wait_until)
        spin_us(1);
      spin_us(rng_below(&t->rng, 5));
      kill_worker(t, setter);
    } else if (kill_now) {
      kill_worker(t, pick_victim(t, S_WAITING, 1, is_waiter));
    }
    /* A setter may have died before setting; then the parent sets (never twice: a lost
     * wake-up after a set that happened must show). */
    uint64_t set_until = mp_monotonic_ns() + (uint64_t)t->hang_ms * 1000000u;
    while (!mp_pevent_is_set(e) && setter >= 0 && !t->dead[setter] && mp_monotonic_ns() < set_until)
      mp_sleep_ms(1);
    if (!mp_pevent_is_set(e))
      assert_mp_ok(mp_pevent_set(e));
  }
  *kills += kill_now;
  await_round_seen(t, e, r);
}

static void event_trial(struct trial *t) {
  mp_pevent *e = NULL;
  assert_mp_ok(mp_pevent_create(&e));
  int setters = 1 + rng_below(&t->rng, 2);
  for (int i = 0; i < WORKERS; i++)
    t->param[i] = i < setters;
  trial_start(t, event_worker, add_pevent, e);
  int kills = 0;
  for (int32_t r = 1; r <= ROUNDS; r++)
    event_round(t, e, r, &kills);
  st(&t->b->stop, 1);
  assert_mp_ok(mp_pevent_set(e));
  join_survivors(t, NULL, NULL);
  trial_end(t);
  mp_pevent_free(e);
}

/* ---- Value -------------------------------------------------------------------------------- */

static void add_shared(mp_args *a, void *v) { assert_mp_ok(mp_args_add_shared(a, v)); }

static void shared_trial(struct trial *t) {
  mp_shared *v = NULL;
  assert_mp_ok(mp_shared_create(&v, MP_SHARED_INT64, 1));
  trial_start(t, shared_worker, add_shared, v);
  struct lockish o = {plock_take, plock_give, give_nothing, mp_shared_lock(v), 0, NULL};
  chaos_kills(t, &o);
  st(&t->b->stop, 1);
  join_survivors(t, describe_lock, mp_shared_lock(v));
  int64_t sum = 0, value = -1;
  int maybe = 0;
  for (int i = 0; i < WORKERS; i++) {
    sum += t->b->s[i].count;
    maybe += t->dead[i] && t->died_in[i] == S_WAITING;
  }
  int rc = mp_shared_get_int(v, 0, &value);
  if (rc != 0 || value < sum || value > sum + maybe)
    T_FAIL(t, "the value is %lld (%s); %lld adds were counted, %d more may have landed",
           (long long)value, mp_strerror(rc), (long long)sum, maybe);
  trial_end(t);
  mp_shared_free(v);
}

/* ---- queues -------------------------------------------------------------------------------- */

static void add_queue(mp_args *a, void *q) { assert_mp_ok(mp_args_add_queue(a, q)); }
static int is_producer(struct trial *t, int i) { return (t->param[i] & 2) != 0; }
static int is_consumer(struct trial *t, int i) { return (t->param[i] & 2) == 0; }

/* The parent gets what is there (within timeout_ms for the first), checking each message;
 * returns the number received or a negative error. */
static int parent_drain(struct trial *t, mp_queue *q, int joinable, int timeout_ms, int64_t *last) {
  struct slot me;
  memset(&me, 0, sizeof me);
  int n = 0;
  for (;;) {
    void *buf = NULL;
    size_t len = 0;
    uint32_t from = 0;
    int rc = mp_queue_get(q, &buf, &len, n == 0 ? timeout_ms : 0);
    if (rc == MP_EEMPTY)
      return n;
    if (rc != 0) {
      T_FAIL(t, "the parent's get failed: %s", mp_strerror(rc));
      return -1;
    }
    rc = check_msg(t->b, &me, buf, len, last, &from);
    mp_free(buf);
    if (rc != 0) {
      T_FAIL(t, "the parent got a bad message (failure %d, detail %lld)", rc, (long long)me.detail);
      return -1;
    }
    if (joinable && mp_queue_task_done(q) != 0)
      T_FAIL(t, "task_done refused a message the parent got: %s", mp_last_error());
    n++;
  }
}

static void describe_queue(void *q, char *buf, size_t size) {
  size_t n = 0;
  mp_queue_qsize(q, &n);
  snprintf(buf, size, " with %zu message(s) queued", n);
}

/* Stops the producers (draining for them), then the consumers (one pill each). */
static void queue_stop(struct trial *t, mp_queue *q, int joinable, int64_t *last) {
  st(&t->b->stop, 1);
  uint64_t until = mp_monotonic_ns() + (uint64_t)t->hang_ms * 1000000u;
  for (int i = 0; i < WORKERS; i++) {
    while (is_producer(t, i) && !t->dead[i] && mp_process_join(t->p[i], 0) != 0 &&
           mp_monotonic_ns() < until)
      if (parent_drain(t, q, joinable, 20, last) < 0)
        return;
  }
  unsigned char pill[sizeof(struct msg)];
  for (int i = 0; i < WORKERS; i++) {
    if (!is_consumer(t, i) || t->dead[i])
      continue;
    make_msg(pill, PILL, 0, 0);
    int rc = mp_queue_put(q, pill, sizeof pill, t->hang_ms);
    if (rc != 0)
      T_FAIL(t, "the parent's put of a pill failed: %s", mp_strerror(rc));
  }
  join_survivors(t, describe_queue, q);
}

/* Every message whose put returned arrived once, except one per consumer killed with it. */
static void queue_account(struct trial *t) {
  int lost_ok = 0, missing = 0;
  for (int i = 0; i < WORKERS; i++)
    lost_ok += t->dead[i] && is_consumer(t, i) && t->died_in[i] == S_WAITING;
  for (int p = 0; p < WORKERS; p++) {
    if (!is_producer(t, p))
      continue;
    int64_t published = t->b->s[p].count;
    int extra_ok = t->dead[p] && t->died_in[p] == S_WAITING; /* its last put may have landed */
    for (int64_t seq = 0; seq < MAX_SEQ; seq++) {
      int seen = (t->b->seen[p][seq / 8] >> (seq % 8)) & 1;
      if (seq < published && !seen)
        missing++;
      if (seq >= published && seen && !(extra_ok && seq == published))
        T_FAIL(t, "producer %d's message %lld arrived but its put never returned", p,
               (long long)seq);
    }
  }
  if (missing > lost_ok)
    T_FAIL(t, "%d message(s) lost; only %d consumer(s) died holding one", missing, lost_ok);
}

/* JoinableQueue: what is left unfinished must be the dead consumers' messages, no more. */
static void queue_account_tasks(struct trial *t, mp_queue *q) {
  int lo = 0, hi = 0, extra = 0;
  for (int i = 0; i < WORKERS; i++) {
    if (!t->dead[i] || !is_consumer(t, i))
      continue;
    lo += t->died_in[i] == S_HOLDING;
    hi += t->died_in[i] == S_WAITING || t->died_in[i] == S_HOLDING || t->died_in[i] == S_RELEASING;
  }
  while (mp_queue_join(q, 0) != 0 && extra <= WORKERS) {
    if (mp_queue_task_done(q) != 0) {
      T_FAIL(t, "join waits but task_done is refused: %s", mp_last_error());
      return;
    }
    extra++;
  }
  if (extra < lo || extra > hi)
    T_FAIL(t, "%d task(s) left unfinished; the dead consumers account for %d to %d", extra, lo, hi);
  if (mp_queue_join(q, 2000) != 0)
    T_FAIL(t, "join did not return with no task unfinished: %s", mp_last_error());
}

static void queue_trial(struct trial *t, int joinable) {
  mp_queue_opts o = {0, 0, 4096, joinable};
  o.maxsize = rng_below(&t->rng, 2) ? 0 : (size_t)(2 + rng_below(&t->rng, 3));
  mp_queue *q = NULL;
  assert_mp_ok(mp_queue_create_ex(&q, &o));
  int producers = 2 + rng_below(&t->rng, 3);
  for (int i = 0; i < WORKERS; i++)
    t->param[i] = joinable | (i < producers ? 2 : 0);
  trial_start(t, queue_worker, add_queue, q);
  for (int k = 0; k < VICTIMS; k++) {
    spin_us(rng_below(&t->rng, 3000));
    kill_worker(t, pick_victim(t, rng_below(&t->rng, 2) ? S_WAITING : -1, 2, NULL));
  }
  int64_t last[WORKERS];
  for (int i = 0; i < WORKERS; i++)
    last[i] = -1;
  queue_stop(t, q, joinable, last);
  if (parent_drain(t, q, joinable, 0, last) >= 0) {
    queue_account(t);
    if (joinable)
      queue_account_tasks(t, q);
  }
  /* The queue still works for the parent. */
  unsigned char m[sizeof(struct msg) + 2000];
  size_t n = make_msg(m, PILL, 1, 2000);
  void *buf = NULL;
  size_t len = 0;
  if (mp_queue_put(q, m, n, 1000) != 0 || mp_queue_get(q, &buf, &len, 1000) != 0 || len != n ||
      memcmp(buf, m, n) != 0)
    T_FAIL(t, "the queue does not carry a message after the trial: %s", mp_last_error());
  mp_free(buf);
  if (joinable && (mp_queue_task_done(q) != 0 || mp_queue_join(q, 1000) != 0))
    T_FAIL(t, "the JoinableQueue does not finish a task after the trial: %s", mp_last_error());
  trial_end(t);
  mp_queue_free(q);
}

static void queue_trial_plain(struct trial *t) { queue_trial(t, 0); }
static void queue_trial_joinable(struct trial *t) { queue_trial(t, 1); }

/* ---- the trial loop ------------------------------------------------------------------------ */

static uint64_t env_u64(const char *name, uint64_t dflt) {
  const char *v = getenv(name);
  return v && *v ? strtoull(v, NULL, 10) : dflt;
}

/* Trials per object per run: a spawn costs ~100 ms under Wine, a few ms on Linux. */
static int trials_default(void) {
#ifdef _WIN32
  return 2;
#else
  return mp_get_start_method() == MP_START_SPAWN ? 15 : 40;
#endif
}

static void run_trials(const char *what, void (*trial)(struct trial *)) {
  const char *only = getenv("MP_CHAOS_ONLY");
  if (only && *only && strcmp(only, what) != 0)
    skip();
  int trials = (int)env_u64("MP_CHAOS_TRIALS", (uint64_t)trials_default());
  uint64_t base = env_u64("MP_CHAOS_SEED", 0);
  if (base == 0 && mp_random_bytes(&base, sizeof base) != 0)
    base = mp_monotonic_ns();
  base &= UINT64_C(0x7fffffffffff); /* short enough to type back in */
  int failed = 0, kills = 0, waited = 0;
  uint64_t start = mp_monotonic_ns();
  for (int i = 0; i < trials; i++) {
    struct trial *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->what = what;
    t->seed = base + (uint64_t)i;
    t->rng = t->seed;
    t->hang_ms = (int)env_u64("MP_CHAOS_HANG_MS", 15000);
    assert_mp_ok(mp_shm_create(&t->shm, sizeof(struct board)));
    assert_mp_ok(mp_shm_map(t->shm, (void **)&t->b, NULL));
    trial(t);
    for (int k = 0; k < WORKERS; k++)
      kills += t->dead[k];
    waited += t->waited;
    if (t->why[0]) {
      failed++;
      print_error("chaos %s: trial failed, seed %llu (MP_CHAOS_SEED=%llu MP_CHAOS_TRIALS=1): %s\n",
                  what, (unsigned long long)t->seed, (unsigned long long)t->seed, t->why);
    }
    mp_shm_free(t->shm);
    free(t);
  }
  char extra[64] = "";
  if (waited > 0)
    snprintf(extra, sizeof extra, ", %d unit(s) replaced", waited);
  print_message("chaos %s: %d trial(s), %d kill(s), %d failed%s, %.1f s (seeds %llu..%llu)\n", what,
                trials, kills, failed, extra, (double)(mp_monotonic_ns() - start) / 1e9,
                (unsigned long long)base, (unsigned long long)(base + (uint64_t)trials - 1));
  assert_int_equal(failed, 0);
}

/* One cmocka test per object, all run by chaos(): the state names the object. */
struct object_case {
  const char *test, *what;
  void (*trial)(struct trial *);
};

static void chaos(void **state) {
  const struct object_case *c = *state;
  run_trials(c->what, c->trial);
}

int main(int argc, char **argv) {
  mp_init(&argc, &argv);
  static struct object_case cases[] = {
      {"chaos_lock", "lock", lock_trial},
      {"chaos_semaphore", "semaphore", sem_trial},
      {"chaos_event", "event", event_trial},
      {"chaos_value", "value", shared_trial},
      {"chaos_queue", "queue", queue_trial_plain},
      {"chaos_joinable_queue", "joinable", queue_trial_joinable},
  };
  struct CMUnitTest tests[sizeof cases / sizeof cases[0]];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct CMUnitTest t = {cases[i].test, chaos, NULL, NULL, &cases[i]};
    tests[i] = t;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
