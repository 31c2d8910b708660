/* Byte buffers for the encoders and a bounded reader for the decoders (buf.c). Not part
 * of the public API. Integers on our own wires are big-endian. */
#ifndef MP_BUF_H
#define MP_BUF_H

#include <stddef.h>
#include <stdint.h>

/* A growable output buffer; {0} is an empty one. */
typedef struct mp__buf {
  unsigned char *data;
  size_t len, cap;
} mp__buf;

/* Makes room for extra more bytes: 0 or MP_ENOMEM. */
int mp__buf_reserve(mp__buf *b, size_t extra);
/* Appends n bytes (p may be NULL when n is 0). */
int mp__buf_put(mp__buf *b, const void *p, size_t n);
int mp__buf_put_u8(mp__buf *b, unsigned v);
int mp__buf_put_u16(mp__buf *b, unsigned v);
int mp__buf_put_u32(mp__buf *b, uint32_t v);
int mp__buf_put_u64(mp__buf *b, uint64_t v);
/* Writes v big-endian into p[0..n). */
void mp__buf_be(unsigned char *p, uint64_t v, int n);
/* Frees the storage and empties b. */
void mp__buf_free(mp__buf *b);

/* Reads bytes from another process: a read past the end sets bad and yields zeros, so a
 * decoder checks bad once after a run of reads instead of after each. */
typedef struct mp__reader {
  const unsigned char *p;
  size_t left;
  int bad;
} mp__reader;

/* Borrows the next n bytes. When fewer are left it sets bad and returns 8 zero bytes,
 * which only the integer getters below read: check bad before using a longer run. */
const unsigned char *mp__get_bytes(mp__reader *r, size_t n);
unsigned mp__get_u8(mp__reader *r);
unsigned mp__get_u16(mp__reader *r);
uint32_t mp__get_u32(mp__reader *r);
uint64_t mp__get_u64(mp__reader *r);

#endif /* MP_BUF_H */
