/* What other core files need of values (value.c): encoding into a shared buffer and
 * decoding one value out of a longer run of bytes. Not part of the public API.
 *
 * Every decoder here checks counts and lengths against the bytes actually present (and
 * nesting against MP_VALUE_MAX_DEPTH) before anything is allocated, so a few hostile bytes
 * can never ask for a large allocation. */
#ifndef MP_VALUE_H
#define MP_VALUE_H

#include "multiproc.h"
#include "buf.h"

/* The extension type of a tuple; other extension types are free for other encodings. */
#define MP__VALUE_EXT_TUPLE 16

/* Appends v's MessagePack encoding to b (nil when v is NULL). */
int mp__value_encode_append(const mp_value *v, mp__buf *b);

/* Decodes the one value that starts p[0..len); *used receives its length in bytes. */
int mp__value_decode_prefix(const void *p, size_t len, mp_value **v, size_t *used);

/* Many small values decoded together (a pool answer of thousands) share one allocation:
 * the arena's block, made on first use for `expected` values and freed when the last value
 * taken from it is freed, by whichever thread. Values beyond `expected` come from the heap.
 * Nothing changes for their owner: each is freed with mp_value_free as usual. */
typedef struct mp__value_arena {
  struct mp__vblock *b; /* the block values come from now */
  size_t expected;      /* values still expected beyond it */
  size_t returned;      /* of b's values, those its owner already gave back */
} mp__value_arena;
void mp__value_arena_init(mp__value_arena *a, size_t expected);
/* mp__value_decode_prefix with the value (and what it contains) from a (may be NULL). */
int mp__value_decode_in(mp__value_arena *a, const void *p, size_t len, mp_value **v, size_t *used);
/* mp_value_free for the thread that owns a, while a is in use: a value of a's current
 * block is given back without an atomic operation of its own. */
void mp__value_free_in(mp__value_arena *a, mp_value *v);
/* Ends the batch: the blocks are freed once the values taken from them are. */
void mp__value_arena_done(mp__value_arena *a);

/* Checks the one value that starts p[0..len) as decoding would, without building it, and
 * gives its length: 0 or MP_EPROTO. */
int mp__value_skip(const void *p, size_t len, size_t *used);

/* Checks that p[0..len) holds exactly one value (0 or MP_EPROTO): call it before handing
 * another process's bytes to msgpack-c, which allocates for whatever counts they claim. */
int mp__value_check(const void *p, size_t len);

/* Reads the header of a MessagePack array at p: *count items follow after *used bytes.
 * MP_EPROTO if p holds no array header or the count exceeds the bytes after it. */
int mp__value_array_head(const void *p, size_t len, size_t *count, size_t *used);

/* If p starts an extension value: 1, with its type, payload and whole length (*used);
 * 0 if it starts something else; MP_EPROTO if the extension is cut short. */
int mp__value_ext_head(const void *p, size_t len, int *type, const unsigned char **payload,
                       size_t *payload_len, size_t *used);

/* Appends an extension value's header (type, payload length) to b; the payload follows. */
int mp__value_put_ext_head(mp__buf *b, int type, size_t payload_len);

/* Appends the header of an array of n items to b; the items follow. */
int mp__value_put_array_head(mp__buf *b, size_t n);

/* Appends (key, val) to a dict without looking for an equal key, in amortised O(1): for a
 * caller that has already checked the keys are distinct (the pickle reader sorts them).
 * Takes both, and frees them on failure. */
int mp__value_dict_push(mp_value *dict, mp_value *key, mp_value *val);

/* Takes item i out of a list or tuple, leaving None in its place: the caller owns *item.
 * Moves a large item out of a request without copying it. */
int mp__value_take(mp_value *seq, size_t i, mp_value **item);

#endif /* MP_VALUE_H */
