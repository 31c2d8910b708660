/* Python's multiprocessing.connection framing as an incremental decoder (see frame.h). */
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "multiproc.h"

#define HDR_SHORT 4
#define FIRST_CAP ((size_t)1 << 16) /* bodies up to this size get their buffer at once */

size_t mp__frame_header(unsigned char *hdr, uint64_t len) {
  if (len <= 0x7fffffffu) {
    mp__put_be(hdr, len, 4);
    return HDR_SHORT;
  }
  mp__put_be(hdr, 0xffffffffu, 4);
  mp__put_be(hdr + 4, len, 8);
  return MP_FRAME_HDR_MAX;
}

static void next_header(mp__frame_rx *f) {
  f->hdr_got = 0;
  f->hdr_need = HDR_SHORT;
  f->body = NULL;
  f->body_len = f->body_got = f->body_cap = 0;
}

void mp__frame_init(mp__frame_rx *f, size_t max) {
  memset(f, 0, sizeof *f);
  f->max = max;
  f->first_cap = FIRST_CAP;
  next_header(f);
}

void mp__frame_reset(mp__frame_rx *f) {
  free(f->body);
  f->skip = 0;
  next_header(f);
}

size_t mp__frame_space(mp__frame_rx *f, unsigned char **dst) {
  *dst = NULL;
  if (f->desync)
    return 0;
  if (f->skip > 0)
    return f->skip > (uint64_t)SIZE_MAX ? SIZE_MAX : (size_t)f->skip;
  if (f->body) {
    *dst = f->body + f->body_got;
    return f->body_cap - f->body_got;
  }
  *dst = f->hdr + f->hdr_got;
  return f->hdr_need - f->hdr_got;
}

/* The header is complete: check the length before allocating anything. */
static int start_body(mp__frame_rx *f) {
  uint64_t n = f->hdr_need == MP_FRAME_HDR_MAX ? mp__get_be(f->hdr + 4, 8) : mp__get_be(f->hdr, 4);
  if (n > (uint64_t)f->max) {
    next_header(f);
    f->skip = n;
    return mp_set_error(MP_EPROTO,
                        "message of %llu bytes exceeds the connection's maximum of %llu bytes "
                        "(mp_conn_set_max_message); it is skipped",
                        (unsigned long long)n, (unsigned long long)f->max);
  }
  size_t cap = n < f->first_cap ? (size_t)n : f->first_cap;
  f->body = malloc(cap ? cap : 1);
  if (f->body == NULL) {
    next_header(f);
    f->skip = n;
    return mp_set_error(MP_ENOMEM, "out of memory for a message of %llu bytes; it is skipped",
                        (unsigned long long)n);
  }
  f->body_len = (size_t)n;
  f->body_got = 0;
  f->body_cap = cap;
  return n == 0 ? MP_FRAME_DONE : MP_FRAME_MORE;
}

static int header_bytes(mp__frame_rx *f, size_t n) {
  f->hdr_got += n;
  if (f->hdr_got == HDR_SHORT && f->hdr_need == HDR_SHORT) {
    int32_t len = (int32_t)(uint32_t)mp__get_be(f->hdr, 4);
    if (len == -1) {
      f->hdr_need = MP_FRAME_HDR_MAX;
      return MP_FRAME_MORE;
    }
    if (len < 0) {
      next_header(f);
      f->desync = 1;
      return mp_set_error(MP_EPROTO, "bad message length prefix %ld", (long)len);
    }
  }
  return f->hdr_got < f->hdr_need ? MP_FRAME_MORE : start_body(f);
}

/* The buffer is full but the body is not: double it (up to the announced length). */
static int grow_body(mp__frame_rx *f) {
  size_t cap = f->body_len - f->body_cap < f->body_cap ? f->body_len : 2 * f->body_cap;
  unsigned char *p = realloc(f->body, cap);
  if (p == NULL) {
    uint64_t rest = f->body_len - f->body_got, total = f->body_len;
    free(f->body);
    next_header(f);
    f->skip = rest;
    return mp_set_error(MP_ENOMEM, "out of memory for a message of %llu bytes; it is skipped",
                        (unsigned long long)total);
  }
  f->body = p;
  f->body_cap = cap;
  return MP_FRAME_MORE;
}

int mp__frame_advance(mp__frame_rx *f, size_t n) {
  if (f->desync)
    return mp_set_error(MP_EPROTO, "the connection lost its message boundaries after a "
                                   "malformed length prefix; close it");
  if (f->skip > 0) {
    f->skip -= n;
    return MP_FRAME_MORE;
  }
  if (f->body == NULL)
    return header_bytes(f, n);
  f->body_got += n;
  if (f->body_got == f->body_len)
    return MP_FRAME_DONE;
  return f->body_got < f->body_cap ? MP_FRAME_MORE : grow_body(f);
}

int mp__frame_completes(const mp__frame_rx *f, const unsigned char *p, size_t n) {
  if (f->desync)
    return 1;
  size_t got = f->hdr_got;
  if (f->skip > 0) { /* the rest of a skipped frame goes first, then a new header */
    if (f->skip >= n)
      return 0;
    p += (size_t)f->skip;
    n -= (size_t)f->skip;
    got = 0;
  } else if (f->body) {
    return n >= f->body_len - f->body_got;
  }
  unsigned char h[MP_FRAME_HDR_MAX];
  size_t take = n < MP_FRAME_HDR_MAX - got ? n : MP_FRAME_HDR_MAX - got;
  memcpy(h, f->hdr, got);
  memcpy(h + got, p, take);
  if (got + take < HDR_SHORT)
    return 0;
  int32_t len = (int32_t)(uint32_t)mp__get_be(h, 4);
  size_t hdr = len == -1 ? MP_FRAME_HDR_MAX : HDR_SHORT;
  if (len < -1)
    return 1;
  if (got + take < hdr)
    return 0;
  uint64_t body = len == -1 ? mp__get_be(h + 4, 8) : (uint64_t)len;
  return body > (uint64_t)f->max || (uint64_t)(n - (hdr - got)) >= body;
}

int mp__frame_push(mp__frame_rx *f, const void *data, size_t len, size_t *used) {
  const unsigned char *p = data;
  *used = 0;
  int rc = MP_FRAME_MORE;
  while (rc == MP_FRAME_MORE && *used < len) {
    unsigned char *dst;
    size_t room = mp__frame_space(f, &dst), n = len - *used;
    if (room == 0)
      return mp__frame_advance(f, 0); /* desync */
    if (n > room)
      n = room;
    if (dst)
      memcpy(dst, p + *used, n);
    *used += n;
    rc = mp__frame_advance(f, n);
  }
  return rc;
}

void mp__frame_take(mp__frame_rx *f, void **body, size_t *len) {
  *body = f->body;
  *len = f->body_len;
  next_header(f);
}

int mp__frame_mid(const mp__frame_rx *f) { return f->hdr_got > 0 || f->body || f->skip > 0; }
