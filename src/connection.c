/* Pipes and connections: message framing over a platform channel, compatible with
 * Python's multiprocessing.connection on sockets. The receive side keeps its partial
 * frame in the connection so a timeout never loses framing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xfer.h"
#include "connection.h"
#include "frame.h"
#include "platform.h"

struct mp_conn {
  mp_plat_chan *chan; /* NULL once closed */
  mp__frame_rx rx;    /* the frame in progress, kept across timeouts */
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
  if (timeout_ms < 0)
    return MP_FOREVER;
  uint64_t now = mp_plat_monotonic_ns();
  return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
}

/* Reads up to len bytes into buf, at least one; EOF inside a frame becomes MP_EBROKEN. */
static int read_some(mp_conn *c, void *buf, size_t len, uint64_t deadline, int timeout_ms,
                     size_t *got) {
  int rc = mp_plat_chan_read(c->chan, buf, len, remaining(deadline, timeout_ms), got);
  if (rc == MP_EEOF && mp__frame_mid(&c->rx)) {
    char cause[256]; /* mp_set_error overwrites the message it would be formatting */
    snprintf(cause, sizeof cause, "%s", mp_last_error());
    return mp_set_error(MP_EBROKEN,
                        "the peer closed the connection in the middle of a message (%s)", cause);
  }
  return rc;
}

/* Reads until a frame is complete (MP_FRAME_DONE) or an error; reads never go past the
 * frame, and a timeout keeps what arrived for the next call. */
static int recv_frame(mp_conn *c, int timeout_ms) {
  uint64_t deadline =
      mp_plat_monotonic_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
  unsigned char scratch[4096]; /* where the bytes of a skipped frame go */
  for (;;) {
    unsigned char *dst;
    size_t room = mp__frame_space(&c->rx, &dst), got;
    if (room == 0)
      return mp__frame_advance(&c->rx, 0); /* lost boundaries: the error says so */
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

int mp_conn_recv(mp_conn *c, void **buf, size_t *len, int timeout_ms) {
  int rc = check(c, MP_CHAN_READ, "mp_conn_recv");
  if (rc < 0)
    return rc;
  if (buf == NULL || len == NULL)
    return mp_set_error(MP_EINVAL, "mp_conn_recv: buf or len is NULL");
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
  if (mp__frame_mid(&c->rx))
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
