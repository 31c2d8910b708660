/* The manager's front stage: one thread accepts every connection and runs every handshake
 * without blocking (non-blocking sockets, one poll over all of them), so a socket that
 * connects and says nothing costs a small record and a descriptor until its deadline,
 * never a thread. When the table of handshakes is full, a newcomer drops the oldest one,
 * so a flood of idle sockets cannot lock good clients out (a good handshake takes a few
 * round trips; the flood would have to open max_handshakes sockets in that time). A peer
 * whose handshakes keep failing is challenged later and later, and may have only a few
 * handshakes waiting at once. A failing accept (EMFILE, ENFILE, ENOMEM...) backs off,
 * drops the oldest handshake to free a descriptor, is counted in the status, and service
 * goes on. Reads stop at each frame's end, so an authenticated connection's first request
 * is still in its socket when a serving thread (manager.c) takes it over; when
 * max_connections threads serve, it waits here for a free one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "frame.h"
#include "manager.h"

#define ACCEPTS_PER_ROUND 64
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000
#define PENALTY_FREE 10     /* failed handshakes a peer may have before it must wait */
#define PENALTY_BASE_MS 50  /* then 50 ms, doubling with each failure... */
#define PENALTY_MAX_MS 5000 /* ...up to 5 s */
#define PENALTY_FORGET_S 60 /* a peer without a failure this long starts afresh */
#define PENALIZED_WAITING 4 /* handshakes a penalized peer may have waiting at once */
#define PEERS 256           /* peers remembered; the one that failed longest ago goes */
#define MS ((uint64_t)1000000)

enum { P_DELAYED, P_HANDSHAKE, P_READY };

typedef struct pending {
  mp_plat_nbsock *sock;
  uint32_t peer;
  int state;
  uint64_t since;    /* accepted at: the oldest goes first when the table is full */
  uint64_t deadline; /* P_HANDSHAKE: the end of its time; P_DELAYED: when it is challenged */
  mp__frame_rx rx;
  mp__auth_server auth;
} pending;

typedef struct peer_rec {
  uint32_t addr;
  unsigned failures;
  uint64_t last; /* its last failure */
} peer_rec;

typedef struct front {
  mp_manager *m;
  pending **p;
  size_t n, cap;
  mp_plat_nbsock **socks; /* the poll set: the P_HANDSHAKE entries, by index in map */
  size_t *map;
  unsigned char *ready;
  peer_rec peers[PEERS];
  uint64_t backoff_until;
  int backoff_ms;
} front;

/* ---- the table of pending connections ------------------------------------------------ */

static void drop(front *f, size_t i) {
  pending *p = f->p[i];
  mp_plat_nbsock_close(p->sock);
  mp__frame_reset(&p->rx);
  free(p);
  f->p[i] = f->p[--f->n];
}

/* The oldest entry still in its handshake (or delayed), or n if none. */
static size_t oldest_unauthenticated(const front *f) {
  size_t best = f->n;
  for (size_t i = 0; i < f->n; i++)
    if (f->p[i]->state != P_READY && (best == f->n || f->p[i]->since < f->p[best]->since))
      best = i;
  return best;
}

static int grow_table(front *f) {
  if (f->n < f->cap)
    return 0;
  size_t cap = f->cap ? 2 * f->cap : 64;
  pending **p = realloc(f->p, cap * sizeof *p);
  mp_plat_nbsock **socks = p ? realloc(f->socks, cap * sizeof *socks) : NULL;
  size_t *map = socks ? realloc(f->map, cap * sizeof *map) : NULL;
  unsigned char *ready = map ? realloc(f->ready, cap) : NULL;
  if (p)
    f->p = p;
  if (socks)
    f->socks = socks;
  if (map)
    f->map = map;
  if (ready == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for the manager's handshakes");
  f->ready = ready;
  f->cap = cap;
  return 0;
}

/* ---- peers that fail ------------------------------------------------------------------ */

static peer_rec *peer_of(front *f, uint32_t addr, uint64_t now, int create) {
  peer_rec *free_slot = NULL;
  for (size_t i = 0; i < PEERS; i++) {
    peer_rec *r = &f->peers[i];
    if (r->failures && now - r->last > (uint64_t)PENALTY_FORGET_S * 1000 * MS)
      r->failures = 0;
    if (r->failures && r->addr == addr)
      return r;
    if (free_slot == NULL || (free_slot->failures && (!r->failures || r->last < free_slot->last)))
      free_slot = r;
  }
  if (!create)
    return NULL;
  memset(free_slot, 0, sizeof *free_slot);
  free_slot->addr = addr;
  return free_slot;
}

static void failed(front *f, uint32_t addr) {
  uint64_t now = mp_plat_monotonic_ns();
  peer_rec *r = peer_of(f, addr, now, 1);
  r->failures++;
  r->last = now;
  mp_plat_mutex_lock(&f->m->mu);
  f->m->st.auth_failures++;
  mp_plat_mutex_unlock(&f->m->mu);
}

/* How long a peer waits before its challenge (0: none). */
static uint64_t penalty_ns(front *f, uint32_t addr, uint64_t now) {
  peer_rec *r = peer_of(f, addr, now, 0);
  if (r == NULL || r->failures < PENALTY_FREE)
    return 0;
  unsigned k = r->failures - PENALTY_FREE;
  uint64_t ms = k >= 7 ? PENALTY_MAX_MS : (uint64_t)PENALTY_BASE_MS << k;
  return (ms < PENALTY_MAX_MS ? ms : PENALTY_MAX_MS) * MS;
}

/* ---- handshakes --------------------------------------------------------------------- */

/* Sends one handshake frame (length prefix and body) in one piece. */
static int send_frame(pending *p, const unsigned char *body, size_t len) {
  unsigned char buf[MP_FRAME_HDR_MAX + MP_AUTH_OUT_MAX];
  size_t h = mp__frame_header(buf, len);
  memcpy(buf + h, body, len);
  return mp_plat_nbsock_send(p->sock, buf, h + len);
}

/* Sends the challenge: the handshake's time starts now. */
static int challenge(front *f, pending *p, uint64_t now) {
  unsigned char nonce[MP_AUTH_NONCE_LEN], out[MP_AUTH_OUT_MAX];
  size_t olen;
  int rc = mp_plat_random_bytes(nonce, sizeof nonce);
  if (rc < 0)
    return rc;
  mp__auth_server_start(&p->auth, f->m->authkey, f->m->keylen, nonce, out, &olen);
  p->state = P_HANDSHAKE;
  p->deadline = now + (uint64_t)f->m->opts.handshake_timeout_ms * MS;
  return send_frame(p, out, olen);
}

/* Takes one complete handshake frame: answers it; P_READY once authenticated. */
static int on_frame(front *f, pending *p) {
  void *body;
  size_t len, olen;
  unsigned char out[MP_AUTH_OUT_MAX];
  mp__frame_take(&p->rx, &body, &len);
  int rc = mp__auth_server_feed(&p->auth, body, len, out, &olen);
  free(body);
  if (rc == MP_EAUTH) /* counted before the refusal goes out: a peer that saw it, and the
                         owner it told, find the failure in the status and in the penalty */
    failed(f, p->peer);
  if (olen > 0 && send_frame(p, out, olen) < 0 && rc >= 0)
    rc = MP_EBROKEN;
  if (rc == MP_AUTH_DONE)
    p->state = P_READY;
  return rc < 0 ? rc : 0;
}

/* Reads what a handshaking socket has, never past the end of a frame: 0 to go on, < 0 to
 * drop it (closed, malformed, oversized, or refused). */
static int on_readable(front *f, pending *p) {
  while (p->state == P_HANDSHAKE) {
    unsigned char *dst;
    size_t room = mp__frame_space(&p->rx, &dst), got;
    if (room == 0 || dst == NULL) /* lost framing, or a frame being skipped */
      return MP_EPROTO;
    int rc = mp_plat_nbsock_recv(p->sock, dst, room, &got);
    if (rc == MP_ETIMEDOUT)
      return 0; /* nothing more now */
    if (rc == 0)
      rc = mp__frame_advance(&p->rx, got);
    if (rc == MP_EPROTO) /* an oversized or malformed handshake frame */
      failed(f, p->peer);
    if (rc == MP_FRAME_DONE)
      rc = on_frame(f, p);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* ---- accepting ------------------------------------------------------------------------ */

/* How many handshakes the peer has waiting for their challenge. */
static size_t delayed_of(const front *f, uint32_t addr) {
  size_t k = 0;
  for (size_t i = 0; i < f->n; i++)
    k += f->p[i]->state == P_DELAYED && f->p[i]->peer == addr;
  return k;
}

/* A new connection: challenged at once, or later if its peer has failed too often. */
static void admit(front *f, mp_plat_nbsock *sock, uint32_t peer, uint64_t now) {
  uint64_t wait = penalty_ns(f, peer, now);
  pending *p = NULL;
  if ((wait == 0 || delayed_of(f, peer) < PENALIZED_WAITING) && grow_table(f) == 0)
    p = calloc(1, sizeof *p);
  if (p == NULL) {
    mp_plat_nbsock_close(sock);
    return;
  }
  p->sock = sock;
  p->peer = peer;
  p->since = now;
  mp__frame_init(&p->rx, MP_AUTH_FRAME_MAX);
  f->p[f->n++] = p;
  p->state = P_DELAYED;
  p->deadline = now + wait;
  if (wait == 0 && challenge(f, p, now) < 0)
    drop(f, f->n - 1);
}

static void back_off(front *f, uint64_t now) {
  f->backoff_ms = f->backoff_ms ? 2 * f->backoff_ms : BACKOFF_MIN_MS;
  if (f->backoff_ms > BACKOFF_MAX_MS)
    f->backoff_ms = BACKOFF_MAX_MS;
  f->backoff_until = now + (uint64_t)f->backoff_ms * MS;
}

static void accept_some(front *f, uint64_t now) {
  for (int k = 0; k < ACCEPTS_PER_ROUND; k++) {
    if (f->n >= (size_t)f->m->opts.max_handshakes) {
      size_t old = oldest_unauthenticated(f);
      if (old == f->n)
        return; /* every one is authenticated and waiting for a serving slot */
      drop(f, old);
    }
    mp_plat_nbsock *sock;
    uint32_t peer = 0;
    int rc = mp_plat_tcp_accept_nb(f->m->listener, &sock, &peer);
    if (rc == MP_ETIMEDOUT)
      return;
    if (rc < 0) {
      mp__manager_note(f->m, 1, mp_last_error());
      size_t old = oldest_unauthenticated(f);
      if (rc == MP_ENOMEM && old < f->n) /* out of descriptors: give one back */
        drop(f, old);
      back_off(f, now);
      return;
    }
    f->backoff_ms = 0;
    mp_plat_mutex_lock(&f->m->mu);
    f->m->st.accepted++;
    mp_plat_mutex_unlock(&f->m->mu);
    admit(f, sock, peer, now);
  }
}

/* ---- the loop ------------------------------------------------------------------------- */

/* Hands authenticated connections to serving threads while there are free ones. */
static void hand_over(front *f) {
  for (;;) {
    size_t best = f->n;
    for (size_t i = 0; i < f->n; i++)
      if (f->p[i]->state == P_READY && (best == f->n || f->p[i]->since < f->p[best]->since))
        best = i;
    if (best == f->n)
      return;
    mp_plat_mutex_lock(&f->m->mu);
    int room = f->m->nconns < f->m->opts.max_connections;
    mp_plat_mutex_unlock(&f->m->mu);
    if (!room)
      return;
    mp_plat_chan *chan;
    pending *p = f->p[best];
    int rc = mp_plat_nbsock_to_chan(p->sock, &chan);
    p->sock = NULL;
    if (rc == 0)
      rc = mp__manager_serve_conn(f->m, chan, f->m->opts.handshake_timeout_ms);
    if (rc < 0 && rc != MP_EBUSY)
      mp__manager_note(f->m, 1, mp_last_error());
    drop(f, best);
  }
}

/* Ends handshakes out of time, challenges delayed ones whose wait is over, and gives the
 * time until the next of these (or -1). */
static int timers(front *f, uint64_t now) {
  uint64_t next = UINT64_MAX;
  for (size_t i = 0; i < f->n;) {
    pending *p = f->p[i];
    if (p->state == P_DELAYED && p->deadline <= now && challenge(f, p, now) < 0) {
      drop(f, i);
      continue;
    }
    if (p->state == P_HANDSHAKE && p->deadline <= now) {
      drop(f, i);
      continue;
    }
    if (p->state != P_READY && p->deadline < next)
      next = p->deadline;
    i++;
  }
  if (f->backoff_ms && f->backoff_until > now && f->backoff_until < next)
    next = f->backoff_until;
  if (next == UINT64_MAX)
    return -1;
  uint64_t ms = (next - now + MS - 1) / MS;
  return ms > 60000 ? 60000 : (int)ms;
}

static int stopping(mp_manager *m) {
  mp_plat_mutex_lock(&m->mu);
  int stop = m->stopping;
  mp_plat_mutex_unlock(&m->mu);
  return stop;
}

static void round_trip(front *f) {
  uint64_t now = mp_plat_monotonic_ns();
  hand_over(f);
  int timeout = timers(f, now);
  size_t ns = 0;
  for (size_t i = 0; i < f->n; i++)
    if (f->p[i]->state == P_HANDSHAKE) {
      f->map[ns] = i;
      f->socks[ns++] = f->p[i]->sock;
    }
  /* Listen unless backing off, or unless every entry waits for a serving slot (none could
   * make room for a newcomer, and the listener would stay readable). */
  int listen = now >= f->backoff_until &&
               (f->n < (size_t)f->m->opts.max_handshakes || oldest_unauthenticated(f) < f->n);
  int accept_ready = 0, woken = 0;
  int rc = mp_plat_tcp_poll(f->m->listener, listen, f->socks, ns, f->ready, &accept_ready, &woken,
                            timeout);
  if (rc < 0) { /* poll itself failed (no memory): keep going after a pause */
    mp__manager_note(f->m, 1, mp_last_error());
    back_off(f, now);
    mp_plat_tcp_poll(f->m->listener, 0, NULL, 0, NULL, &accept_ready, &woken, f->backoff_ms);
    return;
  }
  now = mp_plat_monotonic_ns();
  /* Backwards: dropping entry i moves the last one into its place. */
  for (size_t k = ns; k-- > 0;)
    if (f->ready[k] && on_readable(f, f->p[f->map[k]]) < 0)
      drop(f, f->map[k]);
  if (accept_ready)
    accept_some(f, now);
  hand_over(f); /* the handshakes just completed, before the next wait */
}

void mp__manager_front(mp_manager *m) {
  front f;
  memset(&f, 0, sizeof f);
  f.m = m;
  while (!stopping(m)) {
    round_trip(&f);
    mp_plat_mutex_lock(&m->mu);
    m->st.handshakes = f.n;
    mp_plat_mutex_unlock(&m->mu);
  }
  while (f.n > 0)
    drop(&f, f.n - 1);
  free(f.p);
  free(f.socks);
  free(f.map);
  free(f.ready);
  mp_plat_mutex_lock(&m->mu);
  m->st.handshakes = 0;
  mp_plat_mutex_unlock(&m->mu);
}
