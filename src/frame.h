/* The framing of Python's multiprocessing.connection as a pure incremental decoder
 * (frame.c): a 4-byte big-endian signed length, or -1 then an 8-byte length, then the
 * body. It owns no I/O: the connection (connection.c), the manager's handshake stage and
 * the fuzzer hand it bytes, in pieces of any size, and a piece missing (a timeout) never
 * loses its place. A length is checked against the maximum before anything is allocated;
 * a longer frame is reported once and then skipped. A large body's buffer grows as its
 * bytes arrive (at most twice what arrived), so a header alone costs no memory. Not part
 * of the public API. */
#ifndef MP_FRAME_H
#define MP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define MP_FRAME_HDR_MAX 12 /* -1 marker + 8-byte length */

/* Big-endian n-byte integers, as the frame headers carry their lengths. */
static inline void mp__put_be(unsigned char *p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char)(v & 0xff);
}

static inline uint64_t mp__get_be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

typedef struct mp__frame_rx {
  size_t max;       /* largest body accepted; set it at any time between frames */
  size_t first_cap; /* the first buffer of a body (64 KiB; the fuzzer makes it small) */
  unsigned char hdr[MP_FRAME_HDR_MAX];
  size_t hdr_got, hdr_need;
  unsigned char *body;                 /* the frame in progress (malloc'd), or NULL */
  size_t body_len, body_got, body_cap; /* announced, received, allocated */
  uint64_t skip;                       /* bytes of an oversized frame still to discard */
  int desync; /* a malformed length was read: frame boundaries are lost for good */
} mp__frame_rx;

enum { MP_FRAME_MORE = 0, MP_FRAME_DONE = 1 };

/* Starts a decoder that accepts bodies of at most max bytes. */
void mp__frame_init(mp__frame_rx *f, size_t max);
/* Frees a partial body and starts afresh (after the stream broke); desync is kept. */
void mp__frame_reset(mp__frame_rx *f);
/* Where the next bytes go (*dst; NULL while skipping: put them anywhere, they are dropped)
 * and at most how many: never past the header or the frame in progress, so a reader that
 * reads exactly that many never takes bytes of the next frame. 0 after a desync. */
size_t mp__frame_space(mp__frame_rx *f, unsigned char **dst);
/* Accounts for n bytes placed where mp__frame_space said. Returns MP_FRAME_MORE,
 * MP_FRAME_DONE (a body is complete: mp__frame_take), MP_EPROTO (the header announced more
 * than max: it is skipped from now on; or a negative length: desync), or MP_ENOMEM (no
 * memory for the body: it is skipped). */
int mp__frame_advance(mp__frame_rx *f, size_t n);
/* Copies up to len bytes from data, stopping at the first event; *used says how many were
 * taken. Returns as mp__frame_advance. */
int mp__frame_push(mp__frame_rx *f, const void *data, size_t len, size_t *used);
/* Hands over the completed body (free with free()) and its length. */
void mp__frame_take(mp__frame_rx *f, void **body, size_t *len);
/* 1 if the n bytes at p, pushed next, would end the frame in progress or report an error
 * (a malformed or oversized length); 0 if more bytes would be needed. Changes nothing. */
int mp__frame_completes(const mp__frame_rx *f, const unsigned char *p, size_t n);
/* 1 while a frame is partly received or being skipped. */
int mp__frame_mid(const mp__frame_rx *f);
/* Writes the header of a len-byte frame into hdr; returns its size (4 or 12). */
size_t mp__frame_header(unsigned char *hdr, uint64_t len);

#endif /* MP_FRAME_H */
