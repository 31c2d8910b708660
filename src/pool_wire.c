/* The pool's frames: building, reading and receiving them (see pool_wire.h). The receive
 * buffer takes everything a read brings, so a burst of results costs one system call. */
#include <stdlib.h>
#include <string.h>

#include "pool_wire.h"

#define RX_MIN 65536

int pw_reserve(pw_buf *b, size_t extra) {
  if (b->cap - b->len >= extra)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra)
    cap *= 2;
  unsigned char *d = realloc(b->data, cap);
  if (d == NULL)
    return mp_set_error(MP_ENOMEM, "pool: out of memory for a %llu-byte frame",
                        (unsigned long long)cap);
  b->data = d;
  b->cap = cap;
  return 0;
}

int pw_put(pw_buf *b, const void *p, size_t n) {
  int rc = pw_reserve(b, n);
  if (rc == 0 && n > 0) {
    memcpy(b->data + b->len, p, n);
    b->len += n;
  }
  return rc;
}

static void be(unsigned char *p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char)(v & 0xff);
}

int pw_put_u8(pw_buf *b, unsigned v) {
  unsigned char c = (unsigned char)v;
  return pw_put(b, &c, 1);
}

int pw_put_u32(pw_buf *b, uint32_t v) {
  unsigned char c[4];
  be(c, v, 4);
  return pw_put(b, c, 4);
}

int pw_put_u64(pw_buf *b, uint64_t v) {
  unsigned char c[8];
  be(c, v, 8);
  return pw_put(b, c, 8);
}

/* Integers are most of what small tasks carry: written here without msgpack-c's buffer. */
static int put_int(pw_buf *b, int64_t i) {
  unsigned char c[9];
  size_t n = 9;
  if (i >= 0 && i < 128) {
    c[0] = (unsigned char)i;
    n = 1;
  } else if (i < 0 && i >= -32) {
    c[0] = (unsigned char)(0xe0 | (i + 32));
    n = 1;
  } else if (i >= INT32_MIN && i <= INT32_MAX) {
    c[0] = 0xd2; /* int 32 */
    be(c + 1, (uint64_t)(uint32_t)(int32_t)i, 4);
    n = 5;
  } else {
    c[0] = 0xd3; /* int 64 */
    be(c + 1, (uint64_t)i, 8);
  }
  int rc = pw_put_u32(b, (uint32_t)n);
  return rc ? rc : pw_put(b, c, n);
}

int pw_put_value(pw_buf *b, const mp_value *v) {
  static const unsigned char nil = 0xc0; /* MessagePack nil */
  if (v == NULL)
    return pw_put_u32(b, 1) || pw_put(b, &nil, 1) ? MP_ENOMEM : 0;
  int64_t i;
  if (mp_value_type_of(v) == MP_VALUE_INT && mp_value_get_int(v, &i) == 0)
    return put_int(b, i);
  void *enc = NULL;
  size_t len = 0;
  int rc = mp_value_encode(v, &enc, &len);
  if (rc == 0 && len > 0xffffffffu)
    rc = mp_set_error(MP_EINVAL, "pool: a value of %llu bytes is too large for a task",
                      (unsigned long long)len);
  if (rc == 0)
    rc = pw_put_u32(b, (uint32_t)len);
  if (rc == 0)
    rc = pw_put(b, enc, len);
  mp_free(enc);
  return rc;
}

int pw_put_target(pw_buf *b, const mp_plat_target *t) {
  size_t mlen = strlen(t->module);
  unsigned char hdr[2];
  be(hdr, mlen, 2);
  int rc = pw_put(b, hdr, 2);
  rc = rc ? rc : pw_put(b, t->module, mlen);
  rc = rc ? rc : pw_put_u64(b, t->offset);
  rc = rc ? rc : pw_put_u8(b, (unsigned)t->fingerprint_len);
  return rc ? rc : pw_put(b, t->fingerprint, t->fingerprint_len);
}

int pw_frame_begin(pw_buf *b, size_t *at) {
  *at = b->len;
  return pw_put_u32(b, 0);
}

void pw_frame_end(pw_buf *b, size_t at) { be(b->data + at, b->len - at - 4, 4); }

void pw_buf_free(pw_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

const unsigned char *pw_get_bytes(pw_reader *r, size_t n) {
  static const unsigned char zeros[8];
  if (r->bad || r->left < n) {
    r->bad = 1;
    return zeros;
  }
  const unsigned char *p = r->p;
  r->p += n;
  r->left -= n;
  return p;
}

static uint64_t get_be(pw_reader *r, int n) {
  const unsigned char *p = pw_get_bytes(r, (size_t)n);
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

unsigned pw_get_u8(pw_reader *r) { return (unsigned)get_be(r, 1); }
uint32_t pw_get_u32(pw_reader *r) { return (uint32_t)get_be(r, 4); }
uint64_t pw_get_u64(pw_reader *r) { return get_be(r, 8); }

int pw_get_target(pw_reader *r, mp_plat_target *t) {
  memset(t, 0, sizeof *t);
  size_t mlen = (size_t)get_be(r, 2);
  if (mlen >= sizeof t->module)
    r->bad = 1;
  else
    memcpy(t->module, pw_get_bytes(r, mlen), r->bad ? 0 : mlen);
  t->offset = pw_get_u64(r);
  t->fingerprint_len = pw_get_u8(r);
  if (t->fingerprint_len > MP_FINGERPRINT_MAX)
    r->bad = 1;
  else
    memcpy(t->fingerprint, pw_get_bytes(r, t->fingerprint_len), r->bad ? 0 : t->fingerprint_len);
  return r->bad ? mp_set_error(MP_EPROTO, "pool: malformed function reference") : 0;
}

/* Makes room for need more bytes after the data, moving the unread part to the front. */
static int rx_room(pw_rx *r, size_t need) {
  if (r->start > 0) {
    memmove(r->data, r->data + r->start, r->len - r->start);
    r->len -= r->start;
    r->start = 0;
  }
  if (r->cap - r->len >= need)
    return 0;
  size_t cap = r->cap ? r->cap : RX_MIN;
  while (cap - r->len < need)
    cap *= 2;
  unsigned char *d = realloc(r->data, cap);
  if (d == NULL)
    return mp_set_error(MP_ENOMEM, "pool: out of memory for a %llu-byte receive buffer",
                        (unsigned long long)cap);
  r->data = d;
  r->cap = cap;
  return 0;
}

int pw_rx_fill(pw_rx *r, mp_plat_chan *c, int timeout_ms) {
  if (r->start == r->len)
    r->start = r->len = 0;
  if (r->cap - r->len < RX_MIN / 4) {
    int rc = rx_room(r, RX_MIN / 4);
    if (rc < 0)
      return rc;
  }
  size_t got = 0;
  int rc = mp_plat_chan_read(c, r->data + r->len, r->cap - r->len, timeout_ms, &got);
  if (rc == 0)
    r->len += got;
  return rc;
}

int pw_rx_frame(pw_rx *r, pw_reader *body) {
  size_t avail = r->len - r->start;
  if (avail < 4)
    return 0;
  const unsigned char *p = r->data + r->start;
  uint64_t n = ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
  if (n == 0 || n > MP_CONN_DEFAULT_MAX_MESSAGE)
    return mp_set_error(MP_EPROTO, "pool: bad frame length %llu", (unsigned long long)n);
  if (avail < 4 + n) {
    int rc = rx_room(r, (size_t)(4 + n) - avail);
    return rc < 0 ? rc : 0;
  }
  body->p = r->data + r->start + 4;
  body->left = (size_t)n;
  body->bad = 0;
  r->start += 4 + (size_t)n;
  return 1;
}

void pw_rx_free(pw_rx *r) {
  free(r->data);
  memset(r, 0, sizeof *r);
}

int pw_decode_value(const unsigned char *p, size_t len, mp_value **v) {
  int64_t i = 0;
  int fast = 1;
  if (len == 1 && (p[0] < 0x80 || p[0] >= 0xe0))
    i = (int64_t)(int8_t)p[0];
  else if (len == 5 && p[0] == 0xd2)
    i = (int32_t)(((uint32_t)p[1] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 8) | p[4]);
  else if (len == 9 && p[0] == 0xd3) {
    uint64_t u = 0;
    for (int k = 1; k < 9; k++)
      u = (u << 8) | p[k];
    i = (int64_t)u;
  } else
    fast = 0;
  if (!fast)
    return mp_value_decode(p, len, v);
  *v = mp_value_int(i);
  return *v ? 0 : MP_ENOMEM;
}
