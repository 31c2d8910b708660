/* The pickle subset of the manager protocol (pickle.c). Not part of the public API. */
#ifndef MP_PICKLE_H
#define MP_PICKLE_H

#include <stddef.h>

#include "multiproc.h"

/* What memo references in one pickle may expand to, in values copied. */
#define MP_PICKLE_MEMO_NODES (1u << 20)

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

/* Pickles v (protocol 4 opcodes, no frames) into *buf (free with free()). */
int mp__pickle_dumps(const mp_value *v, void **buf, size_t *len);
/* Pickles the reply (kind, v), e.g. ('#RETURN', v), without taking v. */
int mp__pickle_dumps_pair(const char *kind, const mp_value *v, void **buf, size_t *len);
/* Pickles the reply ('#ERROR', <kind>(msg)) (msg NULL or "": no arguments). */
int mp__pickle_dumps_error(int kind, const char *msg, void **buf, size_t *len);
/* Unpickles buf (protocols 2-5) into *out; exc (may be NULL) receives an exception
 * instance. Anything outside the subset is MP_EPROTO with a message naming it. */
int mp__pickle_loads(const void *buf, size_t len, mp_value **out, mp__pk_exc *exc);
/* The Python class name of an MP_PK_EXC_* kind ("Empty"). */
const char *mp__pickle_exc_name(int kind);

#endif /* MP_PICKLE_H */
