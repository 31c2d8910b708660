/* Pipes and connections: message framing over a platform channel, compatible with
 * Python's multiprocessing.connection on sockets. The receive side keeps its partial
 * frame in the connection so a timeout never loses framing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xfer.h"
#include "buf.h"
#include "connection.h"
#include "frame.h"
#include "platform.h"

#define HDR_SHORT 4
#define HDR_LONG MP_FRAME_HDR_MAX
#define RA_MIN 65536 /* a read-ahead buffer's least size */
#define STAGE 4096   /* a staged connection's read size (mp__conn_set_staged) */

struct mp_conn {
  mp_plat_chan *chan; /* NULL once closed */
  mp__frame_rx rx;    /* the frame in progress, kept across timeouts; its max, skip and
                         desync serve the read-ahead too */
  /* Read-ahead (mp__conn_set_readahead): each read takes what has arrived, and messages
   * are served out of ra[ra_start..ra_len) instead of rx. */
  int readahead, accepts_handles;
  unsigned char *ra;
  size_t ra_start, ra_len, ra_cap;
  /* Handles that came along the data (POSIX), oldest first, until a message takes them. */
  mp_plat_handle *in_h;
  size_t in_n, in_cap;
  /* Staged reads (mp__conn_set_staged): each read takes up to STAGE bytes into stage, and
   * the frame decoder takes them from st[start..len); awaits: timed reads wait first. */
  int staged, awaits;
  unsigned char *stage; /* allocated at the first read */
  size_t st_start, st_len;
  /* Handles to go along the next mp__conn_send_batch (POSIX); owned by the caller. */
  mp_plat_handle *out_h;
  size_t out_n;
};

static int conn_new(mp_conn **out, mp_plat_chan *chan) {
  mp_conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    mp_plat_chan_close(chan);
    return mp_set_error(MP_ENOMEM, "out of memory allocating a connection");
  }
  c->chan = chan;
  mp__frame_init(&c->rx, MP_CONN_DEFAULT_MAX_MESSAGE);
  *out = c;
  return 0;
}

int mp_pipe(mp_conn **a, mp_conn **b, int duplex) {
  if (a == NULL || b == NULL)
    return mp_set_error(MP_EINVAL, "mp_pipe: a or b is NULL");
  mp_plat_chan *ca, *cb;
  int rc = mp_plat_chan_pair(&ca, &cb, duplex);
  if (rc < 0)
    return rc;
  rc = conn_new(a, ca);
  if (rc < 0) {
    mp_plat_chan_close(cb);
    return rc;
  }
  rc = conn_new(b, cb);
  if (rc < 0) {
    mp_conn_free(*a);
    *a = NULL;
  }
  return rc;
}

/* Checks that c exists, is open and supports direction dir. */
static int check(const mp_conn *c, int dir, const char *fn) {
  if (c == NULL)
    return mp_set_error(MP_EINVAL, "%s: connection is NULL", fn);
  if (c->chan == NULL)
    return mp_set_error(MP_ECLOSED, "%s: connection is closed", fn);
  if (!(mp_plat_chan_dirs(c->chan) & dir))
    return mp_set_error(MP_EINVAL, "%s: connection is %s", fn,
                        dir == MP_CHAN_READ ? "write-only" : "read-only");
  return 0;
}

int mp_conn_send(mp_conn *c, const void *buf, size_t len) {
  int rc = check(c, MP_CHAN_WRITE, "mp_conn_send");
  if (rc < 0)
    return rc;
  if (buf == NULL && len > 0)
    return mp_set_error(MP_EINVAL, "mp_conn_send: buf is NULL but len is %llu",
                        (unsigned long long)len);
  unsigned char hdr[MP_FRAME_HDR_MAX];
  size_t hlen = mp__frame_header(hdr, (uint64_t)len);
  mp_plat_buf parts[2] = {{hdr, hlen}, {buf, len}};
  return mp_plat_chan_write(c->chan, parts, 2);
}

/* Milliseconds left until deadline_ns, or MP_FOREVER. */
static int remaining(uint64_t deadline_ns, int timeout_ms) {
  if (timeout_ms <= 0)
    return timeout_ms < 0 ? MP_FOREVER : 0; /* no clock reading: polls and blocks are many */
  uint64_t now = mp_plat_monotonic_ns();
  return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
}

/* Reads up to len bytes into buf, at least one; EOF inside a frame becomes MP_EBROKEN. */
static int read_some(mp_conn *c, void *buf, size_t len, uint64_t deadline, int timeout_ms,
                     size_t *got) {
  int ms = remaining(deadline, timeout_ms);
  int rc = c->awaits ? mp_plat_chan_read_awaited(c->chan, buf, len, ms, got)
                     : mp_plat_chan_read(c->chan, buf, len, ms, got);
  if (rc == MP_EEOF && mp__frame_mid(&c->rx)) {
    char cause[256]; /* mp_set_error overwrites the message it would be formatting */
    snprintf(cause, sizeof cause, "%s", mp_last_error());
    return mp_set_error(MP_EBROKEN,
                        "the peer closed the connection in the middle of a message (%s)", cause);
  }
  return rc;
}

/* 1 if c is staged and has its buffer (a connection that cannot get one reads unstaged). */
static int stage_ready(mp_conn *c) {
  if (c->staged && c->stage == NULL)
    c->stage = malloc(STAGE);
  return c->stage != NULL;
}

/* Reads until a frame is complete (MP_FRAME_DONE) or an error; a timeout keeps what arrived
 * for the next call. Reads never go past the frame, except a staged connection's, whose
 * bytes beyond it wait in its stage for the next call. */
static int recv_frame(mp_conn *c, int timeout_ms) {
  uint64_t deadline = timeout_ms > 0 ? mp_plat_monotonic_ns() + (uint64_t)timeout_ms * 1000000u : 0;
  unsigned char scratch[4096]; /* where the bytes of a skipped frame go */
  for (;;) {
    if (c->st_start < c->st_len) { /* staged bytes first, up to the frame's end */
      size_t used;
      int rc = mp__frame_push(&c->rx, c->stage + c->st_start, c->st_len - c->st_start, &used);
      c->st_start += used;
      if (rc != MP_FRAME_MORE)
        return rc;
      continue;
    }
    unsigned char *dst;
    size_t room = mp__frame_space(&c->rx, &dst), got;
    if (room == 0)
      return mp__frame_advance(&c->rx, 0); /* lost boundaries: the error says so */
    if (stage_ready(c) && (dst == NULL || room < STAGE)) {
      /* A header, a small body, or bytes to skip: one read takes what has arrived. A
       * large body is read straight into its buffer below instead. */
      int rc = read_some(c, c->stage, STAGE, deadline, timeout_ms, &got);
      if (rc < 0)
        return rc;
      c->st_start = 0;
      c->st_len = got;
      continue;
    }
    if (dst == NULL) {
      dst = scratch;
      room = room < sizeof scratch ? room : sizeof scratch;
    }
    int rc = read_some(c, dst, room, deadline, timeout_ms, &got);
    if (rc == 0)
      rc = mp__frame_advance(&c->rx, got);
    if (rc != MP_FRAME_MORE)
      return rc;
  }
}

/* ---- read-ahead: many small messages per system call ------------------------------- */

/* Reads and drops the rest of an oversized message that the read-ahead refused. */
static int skip_oversized(mp_conn *c, uint64_t deadline, int timeout_ms) {
  unsigned char scratch[4096];
  while (c->rx.skip > 0) {
    size_t want = c->rx.skip < sizeof scratch ? (size_t)c->rx.skip : sizeof scratch;
    size_t got;
    int rc = read_some(c, scratch, want, deadline, timeout_ms, &got);
    if (rc < 0)
      return rc;
    c->rx.skip -= got;
  }
  return 0;
}

enum { RA_PART = 0, RA_WHOLE = 1, RA_BAD_PREFIX = 2, RA_TOO_LARGE = 3 };

/* Looks at the next message in the read-ahead buffer (changing nothing): RA_WHOLE when it
 * is all there, RA_PART when more bytes are needed (*need: how many in all), or why it
 * cannot be received. */
static int ra_peek(const mp_conn *c, size_t *hdr, uint64_t *body, size_t *need) {
  size_t avail = c->ra_len - c->ra_start;
  const unsigned char *p = c->ra + c->ra_start;
  *need = HDR_SHORT;
  if (avail < HDR_SHORT)
    return RA_PART;
  int32_t n = (int32_t)(uint32_t)mp__get_be(p, 4);
  if (n < -1)
    return RA_BAD_PREFIX;
  *hdr = n == -1 ? HDR_LONG : HDR_SHORT;
  *need = *hdr;
  if (avail < *hdr)
    return RA_PART;
  *body = n == -1 ? mp__get_be(p + 4, 8) : (uint64_t)n;
  if (*body > (uint64_t)c->rx.max)
    return RA_TOO_LARGE;
  *need = *hdr + (size_t)*body;
  return avail >= *need ? RA_WHOLE : RA_PART;
}

/* The errors of ra_peek, as mp_conn_recv reports them. */
static int ra_refuse(mp_conn *c, int why, size_t hdr, uint64_t body) {
  if (why == RA_BAD_PREFIX) {
    c->rx.desync = 1;
    return mp_set_error(MP_EPROTO, "bad message length prefix %ld",
                        (long)(int32_t)(uint32_t)mp__get_be(c->ra + c->ra_start, 4));
  }
  /* What is buffered of it goes now; the rest is skipped by the next reads. */
  size_t avail = c->ra_len - c->ra_start - hdr;
  uint64_t here = avail < body ? avail : body;
  c->ra_start += hdr + (size_t)here;
  c->rx.skip = body - here;
  return mp_set_error(MP_EPROTO,
                      "message of %llu bytes exceeds the connection's maximum of "
                      "%llu bytes (mp_conn_set_max_message); it is skipped",
                      (unsigned long long)body, (unsigned long long)c->rx.max);
}

/* Makes room for need bytes from ra_start on, moving the unread part to the front. */
static int ra_room(mp_conn *c, size_t need) {
  if (c->ra_start > 0) {
    memmove(c->ra, c->ra + c->ra_start, c->ra_len - c->ra_start);
    c->ra_len -= c->ra_start;
    c->ra_start = 0;
  }
  size_t want = need > RA_MIN ? need : RA_MIN;
  if (c->ra_cap >= want && c->ra_cap - c->ra_len >= RA_MIN / 4)
    return 0;
  size_t cap = c->ra_cap ? c->ra_cap : RA_MIN;
  while (cap < want || cap - c->ra_len < RA_MIN / 4)
    cap *= 2;
  unsigned char *d = realloc(c->ra, cap);
  if (d == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for a %llu-byte receive buffer",
                        (unsigned long long)cap);
  c->ra = d;
  c->ra_cap = cap;
  return 0;
}

/* Reads what has arrived (at least one byte, waiting until the deadline) into the buffer,
 * queueing the handles that came along. */
static int ra_fill(mp_conn *c, uint64_t deadline, int timeout_ms) {
  mp_plat_handle h[MP_PLAT_MAX_PASS];
  size_t got = 0, nh = 0;
  void *into = c->ra + c->ra_len;
  size_t room = c->ra_cap - c->ra_len;
  int ms = remaining(deadline, timeout_ms);
  int rc = c->accepts_handles
               ? mp_plat_chan_read_along(c->chan, into, room, ms, &got, h, MP_PLAT_MAX_PASS, &nh)
               : mp_plat_chan_read(c->chan, into, room, ms, &got);
  if (rc == MP_EEOF && c->ra_len > c->ra_start) {
    char cause[256];
    snprintf(cause, sizeof cause, "%s", mp_last_error());
    return mp_set_error(MP_EBROKEN,
                        "the peer closed the connection in the middle of a message (%s)", cause);
  }
  if (rc < 0)
    return rc;
  c->ra_len += got;
  if (nh > c->in_cap - c->in_n) {
    size_t cap = (c->in_n + nh) * 2;
    mp_plat_handle *in = realloc(c->in_h, cap * sizeof *in);
    if (in == NULL) {
      for (size_t i = 0; i < nh; i++)
        mp_plat_handle_close(h[i]);
      c->rx.desync = 1; /* a message will miss its handles: nothing after can be trusted */
      return mp_set_error(MP_ENOMEM, "out of memory queueing %zu received handles", nh);
    }
    c->in_h = in;
    c->in_cap = cap;
  }
  if (nh > 0)
    memcpy(c->in_h + c->in_n, h, nh * sizeof *h);
  c->in_n += nh;
  return 0;
}

int mp__conn_set_readahead(mp_conn *c) {
  if (mp__frame_mid(&c->rx))
    return mp_set_error(MP_ESTATE, "read-ahead must be chosen before receiving");
  c->readahead = 1;
  return 0;
}

int mp__conn_accept_handles(mp_conn *c) {
  int rc = c->readahead ? 0 : mp__conn_set_readahead(c);
  c->accepts_handles = rc == 0;
  return rc;
}

void mp__conn_set_staged(mp_conn *c, int awaits) {
  c->staged = 1;
  c->awaits = awaits;
}

int mp__conn_buffered(const mp_conn *c) {
  size_t hdr = 0, need = 0;
  uint64_t body = 0;
  if (c != NULL && c->st_start < c->st_len)
    return mp__frame_completes(&c->rx, c->stage + c->st_start, c->st_len - c->st_start);
  if (c == NULL || !c->readahead || c->ra_len - c->ra_start < HDR_SHORT)
    return 0;
  return ra_peek(c, &hdr, &body, &need) != RA_PART; /* a message, or an error to report */
}

int mp__conn_recv_borrow(mp_conn *c, const unsigned char **msg, size_t *len, int timeout_ms) {
  int rc = check(c, MP_CHAN_READ, "mp_conn_recv");
  if (rc < 0)
    return rc;
  if (c->rx.desync)
    return mp_set_error(MP_EPROTO, "mp_conn_recv: the connection lost its message boundaries "
                                   "after a malformed length prefix; close it");
  uint64_t deadline = timeout_ms > 0 ? mp_plat_monotonic_ns() + (uint64_t)timeout_ms * 1000000u : 0;
  rc = skip_oversized(c, deadline, timeout_ms);
  while (rc == 0) {
    size_t hdr = 0, need = 0;
    uint64_t body = 0;
    int state = ra_peek(c, &hdr, &body, &need);
    if (state == RA_WHOLE) {
      *msg = c->ra + c->ra_start + hdr;
      *len = (size_t)body;
      c->ra_start += need;
      return 0;
    }
    if (state != RA_PART)
      return ra_refuse(c, state, hdr, body);
    rc = ra_room(c, need);
    rc = rc < 0 ? rc : ra_fill(c, deadline, timeout_ms);
  }
  return rc;
}

/* mp_conn_recv on a read-ahead connection: the message copied out of the buffer. */
static int recv_copy(mp_conn *c, void **buf, size_t *len, int timeout_ms) {
  const unsigned char *msg = NULL;
  size_t n = 0;
  int rc = mp__conn_recv_borrow(c, &msg, &n, timeout_ms);
  if (rc < 0)
    return rc;
  *buf = malloc(n ? n : 1);
  if (*buf == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for a message of %zu bytes", n);
  memcpy(*buf, msg, n);
  *len = n;
  return 0;
}

/* ---- batches of messages, and handles that go with them -------------------------------- */

int mp__conn_msg_begin(mp__buf *b, size_t *at) {
  *at = b->len;
  return mp__buf_put_u32(b, 0);
}

int mp__conn_msg_end(mp__buf *b, size_t at) {
  size_t n = b->len - at - HDR_SHORT;
  if (n > 0x7fffffffu) {
    b->len = at;
    return mp_set_error(MP_EINVAL, "a batched message of %zu bytes exceeds 2 GiB - 1", n);
  }
  mp__put_be(b->data + at, n, 4);
  return 0;
}

int mp__conn_send_batch(mp_conn *c, mp__buf *b) {
  int rc = check(c, MP_CHAN_WRITE, "mp_conn_send");
  if (rc == 0 && (b->len > 0 || c->out_n > 0)) {
    mp_plat_buf piece = {b->data, b->len};
    rc = mp_plat_chan_write_along(c->chan, &piece, 1, c->out_h, c->out_n);
  }
  b->len = 0;
  c->out_n = 0;
  return rc;
}

int mp__conn_give_handles(mp_conn *c, mp_plat_handle peer, const mp_plat_handle *h, size_t n,
                          uint64_t *theirs) {
  if (mp_plat_handle_passing() == MP_PLAT_PASS_INTO) {
    for (size_t i = 0; i < n; i++) {
      mp_plat_handle t;
      int rc = mp_plat_handle_into(peer, h[i], &t);
      if (rc < 0)
        return rc; /* those already given stay with the peer until it exits */
      theirs[i] = (uint64_t)t;
    }
    return 0;
  }
  if (n > MP_PLAT_MAX_PASS - c->out_n)
    return mp_set_error(MP_EINVAL, "more than %d handles for one batch", MP_PLAT_MAX_PASS);
  if (c->out_h == NULL && (c->out_h = malloc(MP_PLAT_MAX_PASS * sizeof *c->out_h)) == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for handles to send");
  for (size_t i = 0; i < n; i++) {
    c->out_h[c->out_n++] = h[i];
    theirs[i] = 0; /* they arrive in order; the receiver takes the next ones */
  }
  return 0;
}

int mp__conn_take_handles(mp_conn *c, const uint64_t *theirs, size_t n, mp_plat_handle *out) {
  if (mp_plat_handle_passing() == MP_PLAT_PASS_INTO) {
    for (size_t i = 0; i < n; i++)
      out[i] = (mp_plat_handle)theirs[i];
    return 0;
  }
  if (n > c->in_n)
    return mp_set_error(MP_EPROTO, "a message names %zu handles but %zu came along", n, c->in_n);
  if (n == 0)
    return 0;
  memcpy(out, c->in_h, n * sizeof *out);
  memmove(c->in_h, c->in_h + n, (c->in_n - n) * sizeof *out);
  c->in_n -= n;
  return 0;
}

int mp_conn_recv(mp_conn *c, void **buf, size_t *len, int timeout_ms) {
  int rc = check(c, MP_CHAN_READ, "mp_conn_recv");
  if (rc < 0)
    return rc;
  if (buf == NULL || len == NULL)
    return mp_set_error(MP_EINVAL, "mp_conn_recv: buf or len is NULL");
  if (c->readahead)
    return recv_copy(c, buf, len, timeout_ms);
  rc = recv_frame(c, timeout_ms);
  if (rc == MP_EBROKEN)
    mp__frame_reset(&c->rx);
  if (rc < 0)
    return rc;
  mp__frame_take(&c->rx, buf, len);
  return 0;
}

int mp_conn_send_value(mp_conn *c, const mp_value *v) {
  int rc = check(c, MP_CHAN_WRITE, "mp_conn_send_value");
  if (rc < 0)
    return rc;
  void *buf;
  size_t len;
  rc = mp_value_encode(v, &buf, &len);
  if (rc < 0)
    return rc;
  rc = mp_conn_send(c, buf, len);
  free(buf);
  return rc;
}

int mp_conn_recv_value(mp_conn *c, mp_value **v, int timeout_ms) {
  if (v == NULL)
    return mp_set_error(MP_EINVAL, "mp_conn_recv_value: v is NULL");
  void *buf;
  size_t len;
  int rc = mp_conn_recv(c, &buf, &len, timeout_ms);
  if (rc < 0)
    return rc;
  rc = mp_value_decode(buf, len, v);
  free(buf);
  return rc;
}

int mp_conn_poll(mp_conn *c, int timeout_ms) {
  int rc = check(c, MP_CHAN_READ, "mp_conn_poll");
  if (rc < 0)
    return rc;
  if (mp__conn_buffered(c))
    return 1;
  mp_plat_waitsrc src = {c->chan, MP_PLAT_INVALID, 0};
  rc = mp_plat_wait_many(&src, 1, timeout_ms);
  if (rc == MP_ETIMEDOUT)
    return 0;
  return rc < 0 ? rc : 1;
}

int mp_conn_set_max_message(mp_conn *c, size_t max_bytes) {
  if (c == NULL || max_bytes == 0)
    return mp_set_error(MP_EINVAL, "mp_conn_set_max_message: %s",
                        c == NULL ? "connection is NULL" : "the maximum must be at least 1");
  c->rx.max = max_bytes;
  return 0;
}

size_t mp_conn_max_message(const mp_conn *c) { return c ? c->rx.max : 0; }

int mp_conn_readable(const mp_conn *c) {
  return c && c->chan && (mp_plat_chan_dirs(c->chan) & MP_CHAN_READ) != 0;
}

int mp_conn_writable(const mp_conn *c) {
  return c && c->chan && (mp_plat_chan_dirs(c->chan) & MP_CHAN_WRITE) != 0;
}

int mp_conn_close(mp_conn *c) {
  if (c == NULL)
    return mp_set_error(MP_EINVAL, "mp_conn_close: connection is NULL");
  mp_plat_chan_close(c->chan);
  c->chan = NULL;
  mp__frame_reset(&c->rx);
  free(c->ra);
  c->ra = NULL;
  c->ra_start = c->ra_len = c->ra_cap = 0;
  free(c->stage);
  c->stage = NULL;
  c->st_start = c->st_len = 0;
  for (size_t i = 0; i < c->in_n; i++)
    mp_plat_handle_close(c->in_h[i]);
  free(c->in_h);
  c->in_h = NULL;
  c->in_n = c->in_cap = 0;
  free(c->out_h);
  c->out_h = NULL;
  c->out_n = 0;
  return 0;
}

void mp_conn_free(mp_conn *c) {
  if (c == NULL)
    return;
  mp_conn_close(c);
  free(c);
}

mp_plat_chan *mp__conn_chan(mp_conn *c) { return c ? c->chan : NULL; }

int mp__conn_skipping(const mp_conn *c) { return c && c->rx.skip > 0; }

/* ---- passing to a spawned child ------------------------------------------------------ */

#define XFER_VERSION 1

static int conn_export(void *obj, mp__xfer *out) {
  mp_conn *c = obj;
  if (c == NULL)
    return mp_set_error(MP_EINVAL, "cannot pass a NULL connection");
  if (c->chan == NULL)
    return mp_set_error(MP_ECLOSED, "cannot pass a closed connection to a child");
  if (mp__frame_mid(&c->rx) || c->ra_len > c->ra_start || c->st_len > c->st_start || c->in_n > 0)
    return mp_set_error(MP_ESTATE, "cannot pass a connection to a child while it is in the "
                                   "middle of receiving a message");
  out->blob[0] = XFER_VERSION;
  out->blob[1] = (unsigned char)mp_plat_chan_dirs(c->chan);
  for (int i = 0; i < 8; i++)
    out->blob[2 + i] = (unsigned char)((uint64_t)c->rx.max >> (56 - 8 * i));
  out->blob_len = 10;
  out->handles[0] = mp_plat_chan_handle(c->chan);
  out->nhandles = 1;
  return 0;
}

static int conn_import(const mp__xfer *in, void **obj) {
  if (in->blob_len != 10 || in->blob[0] != XFER_VERSION || in->nhandles != 1 ||
      (in->blob[1] & ~(MP_CHAN_READ | MP_CHAN_WRITE)) || in->blob[1] == 0) {
    if (in->nhandles >= 1)
      mp_plat_handle_close(in->handles[0]);
    return mp_set_error(MP_EPROTO, "malformed connection record from the parent");
  }
  uint64_t max = 0;
  for (int i = 0; i < 8; i++)
    max = (max << 8) | in->blob[2 + i];
  mp_plat_chan *chan;
  int rc = mp_plat_chan_wrap(&chan, in->handles[0], in->blob[1]);
  if (rc < 0)
    return rc;
  mp_conn *c = NULL;
  rc = conn_new(&c, chan);
  if (rc < 0)
    return rc;
  c->rx.max = max == 0 || max > (uint64_t)SIZE_MAX ? MP_CONN_DEFAULT_MAX_MESSAGE : (size_t)max;
  *obj = c;
  return 0;
}

static void conn_release(void *obj) { mp_conn_free(obj); }

const mp__xfer_type mp__conn_xfer = {MP_XFER_CONN, "connection", conn_export, conn_import,
                                     conn_release};

/* The spawn bootstrap's connection in a child: a duplex channel with default limits. */
int mp__conn_wrap_handle(mp_plat_handle h, mp_conn **out) {
  mp_plat_chan *chan;
  int rc = mp_plat_chan_wrap(&chan, h, MP_CHAN_READ | MP_CHAN_WRITE);
  if (rc < 0)
    return rc;
  rc = conn_new(out, chan);
  return rc < 0 ? rc : 0;
}

/* A connection over a socket channel (the manager's TCP connections). */
int mp__conn_from_chan(mp_plat_chan *chan, mp_conn **out) { return conn_new(out, chan); }
