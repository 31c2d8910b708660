/* Byte buffers and the bounded reader (see buf.h). */
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "buf.h"

int mp__buf_reserve(mp__buf *b, size_t extra) {
  if (b->cap - b->len >= extra)
    return 0;
  if (extra > SIZE_MAX / 2 - b->len)
    return mp_set_error(MP_ENOMEM, "a buffer of %llu more bytes is too large",
                        (unsigned long long)extra);
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra)
    cap *= 2;
  unsigned char *d = realloc(b->data, cap);
  if (d == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory for a %llu-byte buffer", (unsigned long long)cap);
  b->data = d;
  b->cap = cap;
  return 0;
}

int mp__buf_put(mp__buf *b, const void *p, size_t n) {
  int rc = mp__buf_reserve(b, n);
  if (rc == 0 && n > 0) {
    memcpy(b->data + b->len, p, n);
    b->len += n;
  }
  return rc;
}

void mp__buf_be(unsigned char *p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char)(v & 0xff);
}

static int put_be(mp__buf *b, uint64_t v, int n) {
  unsigned char c[8];
  mp__buf_be(c, v, n);
  return mp__buf_put(b, c, (size_t)n);
}

int mp__buf_put_u8(mp__buf *b, unsigned v) { return put_be(b, v, 1); }
int mp__buf_put_u16(mp__buf *b, unsigned v) { return put_be(b, v, 2); }
int mp__buf_put_u32(mp__buf *b, uint32_t v) { return put_be(b, v, 4); }
int mp__buf_put_u64(mp__buf *b, uint64_t v) { return put_be(b, v, 8); }

void mp__buf_free(mp__buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

const unsigned char *mp__get_bytes(mp__reader *r, size_t n) {
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

static uint64_t get_be(mp__reader *r, int n) {
  const unsigned char *p = mp__get_bytes(r, (size_t)n);
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

unsigned mp__get_u8(mp__reader *r) { return (unsigned)get_be(r, 1); }
unsigned mp__get_u16(mp__reader *r) { return (unsigned)get_be(r, 2); }
uint32_t mp__get_u32(mp__reader *r) { return (uint32_t)get_be(r, 4); }
uint64_t mp__get_u64(mp__reader *r) { return get_be(r, 8); }
