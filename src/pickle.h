/* The pickle subset of the manager protocol: the writer (pickle.c) and the bounded reader
 * (pickle_read.c). Not part of the public API. */
#ifndef MP_PICKLE_H
#define MP_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "multiproc.h"

/* The budget of one pickle of n bytes: its result holds at most n + MP_PICKLE_REPEAT_VALUES
 * values (memo references counted at each place they are expanded), and never more than
 * max_values (default MP_PICKLE_MAX_VALUES); while reading, at most twice that many nodes,
 * item links and stack slots; str and bytes content at most 4 n + 1 MiB in all. */
#define MP_PICKLE_MAX_VALUES ((size_t)1 << 21)
#define MP_PICKLE_REPEAT_VALUES ((size_t)1 << 18)

/* The exception classes the pickle subset knows (allowlisted globals). */
enum {
  MP_PK_EXC_NONE = 0,
  MP_PK_EXC_EMPTY,     /* queue.Empty */
  MP_PK_EXC_FULL,      /* queue.Full */
  MP_PK_EXC_VALUE,     /* builtins.ValueError */
  MP_PK_EXC_TYPE,      /* builtins.TypeError */
  MP_PK_EXC_ATTRIBUTE, /* builtins.AttributeError */
  MP_PK_EXC_KEY,       /* builtins.KeyError */
  MP_PK_EXC_RUNTIME,   /* builtins.RuntimeError */
  MP_PK_EXC_EXCEPTION  /* builtins.Exception */
};

/* An exception instance found while reading (the first one; it reads as None in place). */
typedef struct mp__pk_exc {
  int kind;      /* MP_PK_EXC_* */
  char msg[256]; /* its first argument if that was a string */
} mp__pk_exc;

/* What one read may use and what it found out; zero fields take the defaults. */
typedef struct mp__pk_read {
  size_t max_values; /* in: the value budget (0: MP_PICKLE_MAX_VALUES) */
  int64_t *cancel;   /* in: when not NULL, reading stops with MP_ECANCELED once *cancel is
                        non-zero (read atomically; a shutting-down server sets it) */
  mp__pk_exc *exc;   /* in: where an exception instance is reported (may be NULL) */
  /* out, on MP_EPROTO: why the input was refused. MP_PK_EXC_TYPE: a type outside the
   * subset (set, bytearray, complex, a class, an unhashable dict key...); MP_PK_EXC_VALUE:
   * a value of a supported type that cannot be kept exactly (an integer beyond 64 bits, a
   * list that contains itself, equal dict keys, too deep or over budget); MP_PK_EXC_NONE:
   * the bytes are not a well-formed pickle. */
  int refusal;
  size_t work; /* out: dict key comparisons made (tests check they stay O(n log n)) */
} mp__pk_read;

/* Pickles v (protocol 4 opcodes, no frames) into *buf (free with free()). */
int mp__pickle_dumps(const mp_value *v, void **buf, size_t *len);
/* Pickles the reply (kind, v), e.g. ('#RETURN', v), without taking v. */
int mp__pickle_dumps_pair(const char *kind, const mp_value *v, void **buf, size_t *len);
/* Pickles the reply ('#ERROR', <kind>(msg)) (msg NULL or "": no arguments). */
int mp__pickle_dumps_error(int kind, const char *msg, void **buf, size_t *len);
/* Unpickles buf (protocols 2-5) into *out within the budget in *rd (NULL: defaults).
 * Anything outside the subset is MP_EPROTO with a message naming it, and rd->refusal
 * saying which kind of refusal it was. */
int mp__pickle_read(const void *buf, size_t len, mp__pk_read *rd, mp_value **out);
/* mp__pickle_read with the default budget; exc (may be NULL) receives an exception. */
int mp__pickle_loads(const void *buf, size_t len, mp_value **out, mp__pk_exc *exc);
/* The Python class name of an MP_PK_EXC_* kind ("Empty"). */
const char *mp__pickle_exc_name(int kind);
/* The MP_PK_EXC_* kind of an allowlisted exception class, or 0. */
int mp__pickle_exc_lookup(const char *module, const char *name);

#endif /* MP_PICKLE_H */
