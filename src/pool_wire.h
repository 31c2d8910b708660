/* The pool's wire between the master and one worker (pool.c, pool_worker.c). Not public.
 *
 * Every frame is a 4-byte big-endian length and a body whose first byte is its kind:
 *   master -> worker   'I' init: has_initializer u8, [target], maxtasks u64, initargs
 *                      'D' function definition: fnid u32, target
 *                      'T' task: fnid u32, flags u8, n u32, n x (len u32, MessagePack input)
 *                      'S' stop
 *   worker -> master   'H' hello: pid u64          'F' initializer failed: message
 *                      'R' result of one task: n u32, n x (status u8, len u32, payload)
 *                          status 0: MessagePack output; 1: code u32 then a message
 * Integers are big-endian. A target is module (len u16 + bytes), offset u64, fingerprint
 * (len u8 + bytes). A worker answers its tasks in the order it got them, one 'R' frame per
 * task, written before it starts the next one: the oldest unanswered task of a dead worker
 * is therefore the one it was running. */
#ifndef MP_POOL_WIRE_H
#define MP_POOL_WIRE_H

#include "platform.h"

enum {
  PW_INIT = 'I',
  PW_DEF = 'D',
  PW_TASK = 'T',
  PW_STOP = 'S',
  PW_HELLO = 'H',
  PW_INITFAIL = 'F',
  PW_RESULT = 'R'
};
enum { PW_STAR = 1 };            /* task flag: call an mp_star_fn with the input's items */
enum { PW_OK = 0, PW_FAIL = 1 }; /* result item status */

/* A growable output buffer. */
typedef struct pw_buf {
  unsigned char *data;
  size_t len, cap;
} pw_buf;

int pw_reserve(pw_buf *b, size_t extra);
int pw_put(pw_buf *b, const void *p, size_t n);
int pw_put_u8(pw_buf *b, unsigned v);
int pw_put_u32(pw_buf *b, uint32_t v);
int pw_put_u64(pw_buf *b, uint64_t v);
/* Appends MessagePack of v (nil when v is NULL) prefixed by its u32 length. */
int pw_put_value(pw_buf *b, const mp_value *v);
int pw_put_target(pw_buf *b, const mp_plat_target *t);
/* Decodes one MessagePack value (integers without msgpack-c), like mp_value_decode. */
int pw_decode_value(const unsigned char *p, size_t len, mp_value **v);
/* Starts a frame (returns where its length goes) and fills in the length at the end. */
int pw_frame_begin(pw_buf *b, size_t *at);
void pw_frame_end(pw_buf *b, size_t at);
void pw_buf_free(pw_buf *b);

/* Reads a frame body; any read past the end sets bad and yields zeros. */
typedef struct pw_reader {
  const unsigned char *p;
  size_t left;
  int bad;
} pw_reader;

unsigned pw_get_u8(pw_reader *r);
uint32_t pw_get_u32(pw_reader *r);
uint64_t pw_get_u64(pw_reader *r);
/* Borrows n bytes. */
const unsigned char *pw_get_bytes(pw_reader *r, size_t n);
int pw_get_target(pw_reader *r, mp_plat_target *t);

/* A receive buffer that holds as many frames as one read brings. */
typedef struct pw_rx {
  unsigned char *data;
  size_t start, len, cap;
} pw_rx;

/* Reads what the channel has (waiting up to timeout_ms): 0, MP_ETIMEDOUT, MP_EEOF, ... */
int pw_rx_fill(pw_rx *r, mp_plat_chan *c, int timeout_ms);
/* 1 and the next whole frame's body (valid until the next fill), 0 if none is complete,
 * MP_EPROTO for a length beyond the connection maximum. */
int pw_rx_frame(pw_rx *r, pw_reader *body);
void pw_rx_free(pw_rx *r);

/* The worker process's target (pool_worker.c); args[0] is its connection. */
int mp__pool_worker_main(mp_args *args);

#endif /* MP_POOL_WIRE_H */
