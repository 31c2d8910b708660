/* Fuzzes the frame reader of multiprocessing.connection's framing: the incremental decoder
 * (frame.c) fed in pieces of random sizes both ways (copying pushes, and exact reads into
 * the place it names, as connections do), and a real connection (connection.c) over a real
 * pipe that gets the same pieces with a timeout of 0 between them (timeouts mid-frame),
 * then end of file. The property: all three report exactly the frames, oversized frames,
 * malformed prefixes and the partial frame at the end that a plain reading of the whole
 * stream finds, whatever the pieces.
 *
 * Input: byte 0 chooses the maximum frame size (1..128, or 2^k), byte 1 seeds the piece
 * sizes, the rest is the stream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connection.h"
#include "frame.h"
#include "multiproc.h"
#include "platform.h"

#define MAX_EVENTS 4096

enum { EV_FRAME, EV_OVERSIZED, EV_DESYNC };

typedef struct event {
  int kind;
  size_t off, len; /* EV_FRAME: the body's place in the stream */
} event;

typedef struct events {
  event ev[MAX_EVENTS];
  size_t n;
  int partial; /* the stream ends inside a frame */
} events;

static uint64_t be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

/* The plain reading of the whole stream. */
static void reference(const uint8_t *s, size_t n, size_t max, events *out) {
  size_t pos = 0;
  memset(out, 0, sizeof *out);
  while (pos < n && out->n < MAX_EVENTS) {
    if (n - pos < 4)
      goto partial;
    int32_t l = (int32_t)(uint32_t)be(s + pos, 4);
    uint64_t len = (uint64_t)(uint32_t)l;
    size_t hdr = 4;
    if (l == -1) {
      if (n - pos < 12)
        goto partial;
      len = be(s + pos + 4, 8);
      hdr = 12;
    } else if (l < 0) {
      out->ev[out->n++] = (event){EV_DESYNC, 0, 0};
      return;
    }
    pos += hdr;
    if (len > max) {
      out->ev[out->n++] = (event){EV_OVERSIZED, 0, 0};
      if (len > n - pos)
        goto partial;
      pos += (size_t)len;
      continue;
    }
    if (len > n - pos)
      goto partial;
    out->ev[out->n++] = (event){EV_FRAME, pos, (size_t)len};
    pos += (size_t)len;
  }
  return;
partial:
  out->partial = 1;
}

typedef struct pieces {
  uint32_t state;
} pieces;

/* The next piece size, 1..64 most of the time, sometimes larger. */
static size_t next_piece(pieces *p) {
  p->state = p->state * 1103515245u + 12345u;
  uint32_t r = p->state >> 16;
  return (r & 7) == 0 ? 1 + (r % 1500) : 1 + (r % 64);
}

/* Records what mp__frame_push/advance returned; a completed body was checked by the caller. */
static void record(events *got, int rc, mp__frame_rx *f) {
  if (got->n >= MAX_EVENTS)
    return;
  if (rc == MP_FRAME_DONE) {
    void *body;
    size_t len;
    mp__frame_take(f, &body, &len);
    got->ev[got->n++] = (event){EV_FRAME, 0, len};
    free(body);
  } else if (rc == MP_EPROTO) {
    got->ev[got->n++] = (event){f->desync ? EV_DESYNC : EV_OVERSIZED, 0, 0};
  }
}

/* Checks a completed body against the frame the reference found at the same place. */
static void check_body(const events *want, size_t i, const void *body, size_t len,
                       const uint8_t *s) {
  if (i >= want->n)
    abort();
  const event *w = &want->ev[i];
  if (w->kind != EV_FRAME || w->len != len || memcmp(body, s + w->off, len) != 0)
    abort();
}

/* Compares event kinds and frame lengths (contents are compared where bodies are kept). */
static void same(const events *want, const events *got) {
  if (want->n != got->n)
    abort();
  for (size_t i = 0; i < want->n; i++)
    if (want->ev[i].kind != got->ev[i].kind ||
        (want->ev[i].kind == EV_FRAME && want->ev[i].len != got->ev[i].len))
      abort();
}

/* The decoder fed by mp__frame_push, with bodies compared to the stream. */
static void by_push(const uint8_t *s, size_t n, size_t max, uint32_t seed, const events *want) {
  mp__frame_rx f;
  mp__frame_init(&f, max);
  f.first_cap = 1 + seed % 64; /* small, so bodies grow as their bytes arrive */
  events got;
  memset(&got, 0, sizeof got);
  pieces p = {seed};
  size_t pos = 0;
  while (pos < n && !f.desync && got.n < MAX_EVENTS) {
    size_t k = next_piece(&p), used = 0;
    if (k > n - pos)
      k = n - pos;
    while (used < k && !f.desync && got.n < MAX_EVENTS) {
      size_t u;
      int rc = mp__frame_push(&f, s + pos + used, k - used, &u);
      used += u;
      if (rc == MP_FRAME_DONE)
        check_body(want, got.n, f.body, f.body_len, s);
      record(&got, rc, &f);
    }
    pos += used;
  }
  same(want, &got);
  if (!f.desync && got.n < MAX_EVENTS && mp__frame_mid(&f) != want->partial)
    abort();
  mp__frame_reset(&f);
}

/* The decoder fed as connections feed it: exact reads into the place it names. */
static void by_space(const uint8_t *s, size_t n, size_t max, uint32_t seed, const events *want) {
  mp__frame_rx f;
  mp__frame_init(&f, max);
  f.first_cap = 1 + (seed >> 3) % 256;
  events got;
  memset(&got, 0, sizeof got);
  pieces p = {seed ^ 0x5a5a5a5au};
  size_t pos = 0;
  uint8_t scratch[64];
  while (pos < n && !f.desync && got.n < MAX_EVENTS) {
    unsigned char *dst;
    size_t room = mp__frame_space(&f, &dst), k = next_piece(&p);
    if (room == 0)
      abort(); /* only after a desync */
    if (k > room)
      k = room;
    if (k > n - pos)
      k = n - pos;
    if (dst == NULL && k > sizeof scratch)
      k = sizeof scratch;
    memcpy(dst ? dst : scratch, s + pos, k);
    pos += k;
    int rc = mp__frame_advance(&f, k);
    if (rc == MP_FRAME_DONE)
      check_body(want, got.n, f.body, f.body_len, s);
    record(&got, rc, &f);
  }
  same(want, &got);
  if (!f.desync && got.n < MAX_EVENTS && mp__frame_mid(&f) != want->partial)
    abort();
  mp__frame_reset(&f);
}

/* A real connection over a real pipe: pieces written one by one, mp_conn_recv with a
 * timeout of 0 after each, then end of file. */
static void by_connection(const uint8_t *s, size_t n, size_t max, uint32_t seed,
                          const events *want) {
  mp_conn *a, *b;
  if (mp_pipe(&a, &b, 1) != 0)
    return; /* out of descriptors: not the reader's business */
  mp_conn_set_max_message(a, max);
  events got;
  memset(&got, 0, sizeof got);
  pieces p = {seed ^ 0xa5a5a5a5u};
  size_t pos = 0;
  int rc = 0, done = 0;
  while (!done && got.n < MAX_EVENTS) {
    if (pos < n) {
      size_t k = next_piece(&p);
      if (k > n - pos)
        k = n - pos;
      mp_plat_buf piece = {s + pos, k};
      if (mp_plat_chan_write(mp__conn_chan(b), &piece, 1) != 0)
        abort();
      pos += k;
    }
    if (pos == n && mp_conn_writable(b))
      mp_conn_close(b); /* end of file after the last piece */
    for (;;) {
      void *body;
      size_t len;
      rc = mp_conn_recv(a, &body, &len, 0);
      if (rc == 0) {
        check_body(want, got.n, body, len, s);
        got.ev[got.n] = want->ev[got.n];
        got.n++;
        free(body);
      } else if (rc == MP_EPROTO) {
        int desync = got.n < want->n && want->ev[got.n].kind == EV_DESYNC;
        got.ev[got.n++] = (event){desync ? EV_DESYNC : EV_OVERSIZED, 0, 0};
        if (desync) {
          done = 1;
          break;
        }
      } else if (rc == MP_ETIMEDOUT) {
        break; /* the rest of the frame is still to come: write the next piece */
      } else {
        done = 1; /* end of file: MP_EEOF between frames, MP_EBROKEN inside one */
        break;
      }
      if (got.n >= MAX_EVENTS)
        break;
    }
  }
  same(want, &got);
  if (got.n < MAX_EVENTS && !(want->n && want->ev[want->n - 1].kind == EV_DESYNC) &&
      rc != (want->partial ? MP_EBROKEN : MP_EEOF))
    abort();
  mp_conn_free(a);
  mp_conn_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t max = data[0] < 128 ? (size_t)data[0] + 1 : (size_t)1 << (data[0] & 31);
  uint32_t seed = data[1];
  const uint8_t *s = data + 2;
  size_t n = size - 2;
  static events want; /* large: not on the stack */
  reference(s, n, max, &want);
  by_push(s, n, max, seed, &want);
  by_space(s, n, max, seed, &want);
  if (n <= 65536) /* a pipe's buffer holds every piece */
    by_connection(s, n, max, seed, &want);
  return 0;
}
