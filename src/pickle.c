/* The pickle writer of the manager protocol: protocol 4 opcodes without frames, for the
 * values of the subset (None, bool, 64-bit int, float, str, bytes, tuple, list, dict) and
 * the replies ('#RETURN', v), ('#ERROR', exception). Also the allowlist of exception
 * classes, which the reader (pickle_read.c) shares. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "pickle.h"

/* ---- writer ------------------------------------------------------------------------- */

typedef struct pk_out {
  unsigned char *p;
  size_t len, cap;
} pk_out;

static int out_put(pk_out *o, const void *data, size_t n) {
  if (o->len + n > o->cap) {
    size_t cap = o->cap ? o->cap : 64;
    while (cap < o->len + n)
      cap *= 2;
    unsigned char *p = realloc(o->p, cap);
    if (p == NULL)
      return mp_set_error(MP_ENOMEM, "out of memory writing a pickle");
    o->p = p;
    o->cap = cap;
  }
  if (n)
    memcpy(o->p + o->len, data, n);
  o->len += n;
  return 0;
}

static int out_op(pk_out *o, unsigned char op) { return out_put(o, &op, 1); }

static int out_le(pk_out *o, unsigned char op, uint64_t v, int n) {
  unsigned char b[9];
  b[0] = op;
  for (int i = 0; i < n; i++, v >>= 8)
    b[1 + i] = (unsigned char)(v & 0xff);
  return out_put(o, b, (size_t)n + 1);
}

static int write_int(pk_out *o, int64_t i) {
  if (i >= 0 && i < 256)
    return out_le(o, 'K', (uint64_t)i, 1);
  if (i >= INT32_MIN && i <= INT32_MAX)
    return out_le(o, 'J', (uint64_t)(uint32_t)(int32_t)i, 4);
  int rc = out_op(o, 0x8a); /* LONG1: 8 bytes of little-endian two's complement */
  return rc < 0 ? rc : out_le(o, 8, (uint64_t)i, 8);
}

static int write_double(pk_out *o, double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  unsigned char b[9] = {'G'};
  for (int i = 8; i >= 1; i--, bits >>= 8)
    b[i] = (unsigned char)(bits & 0xff);
  return out_put(o, b, 9);
}

/* SHORT_BINUNICODE / BINUNICODE / BINUNICODE8 or SHORT_BINBYTES / BINBYTES / BINBYTES8. */
static int write_blob(pk_out *o, int is_str, const void *s, size_t n) {
  int rc;
  if (n < 256)
    rc = out_le(o, is_str ? 0x8c : 'C', n, 1);
  else if ((uint64_t)n <= 0xffffffffu)
    rc = out_le(o, is_str ? 'X' : 'B', n, 4);
  else
    rc = out_le(o, is_str ? 0x8d : 0x8e, n, 8);
  return rc < 0 ? rc : out_put(o, s, n);
}

static int write_value(pk_out *o, const mp_value *v, int depth);

static int write_items(pk_out *o, const mp_value *v, int depth) {
  size_t n = 0;
  mp_value_len(v, &n);
  for (size_t i = 0; i < n; i++) {
    mp_value *item;
    mp_value_at(v, i, &item);
    int rc = write_value(o, item, depth + 1);
    if (rc < 0)
      return rc;
  }
  return 0;
}

static int write_tuple(pk_out *o, const mp_value *v, int depth) {
  size_t n = 0;
  mp_value_len(v, &n);
  if (n == 0)
    return out_op(o, ')');
  int rc = n > 3 ? out_op(o, '(') : 0;
  if (rc == 0)
    rc = write_items(o, v, depth);
  if (rc == 0)
    rc = out_op(o, n > 3 ? 't' : (unsigned char)(0x84 + n)); /* TUPLE1..3 are 0x85..0x87 */
  return rc;
}

static int write_list(pk_out *o, const mp_value *v, int depth) {
  size_t n = 0;
  mp_value_len(v, &n);
  int rc = out_op(o, ']');
  if (rc == 0 && n > 0) {
    rc = out_op(o, '(');
    if (rc == 0)
      rc = write_items(o, v, depth);
    if (rc == 0)
      rc = out_op(o, 'e');
  }
  return rc;
}

static int write_dict(pk_out *o, const mp_value *v, int depth) {
  size_t n = 0;
  mp_value_len(v, &n);
  int rc = out_op(o, '}');
  if (rc == 0 && n > 0) {
    rc = out_op(o, '(');
    for (size_t i = 0; rc == 0 && i < n; i++) {
      mp_value *k, *val;
      mp_value_dict_at(v, i, &k, &val);
      rc = write_value(o, k, depth + 1);
      if (rc == 0)
        rc = write_value(o, val, depth + 1);
    }
    if (rc == 0)
      rc = out_op(o, 'u');
  }
  return rc;
}

static int write_value(pk_out *o, const mp_value *v, int depth) {
  /* depth is the level of v if it is a container; containers nest at most 32 deep, as
   * the reader allows. */
  if (mp_value_type_of(v) >= MP_VALUE_LIST && depth > MP_VALUE_MAX_DEPTH)
    return mp_set_error(MP_EINVAL, "pickle: value nested deeper than %d", MP_VALUE_MAX_DEPTH);
  int b;
  int64_t i;
  double d;
  const char *s;
  const void *p;
  size_t n = 0;
  switch (mp_value_type_of(v)) {
  case MP_VALUE_NIL: return out_op(o, 'N');
  case MP_VALUE_BOOL: mp_value_get_bool(v, &b); return out_op(o, b ? 0x88 : 0x89);
  case MP_VALUE_INT: mp_value_get_int(v, &i); return write_int(o, i);
  case MP_VALUE_DOUBLE: mp_value_get_double(v, &d); return write_double(o, d);
  case MP_VALUE_STR: mp_value_get_str(v, &s, &n); return write_blob(o, 1, s, n);
  case MP_VALUE_BYTES: mp_value_get_bytes(v, &p, &n); return write_blob(o, 0, p, n);
  case MP_VALUE_LIST: return write_list(o, v, depth);
  case MP_VALUE_TUPLE: return write_tuple(o, v, depth);
  case MP_VALUE_DICT: return write_dict(o, v, depth);
  default: return mp_set_error(MP_EINVAL, "pickle: value is NULL or of an unknown type");
  }
}

static int finish(pk_out *o, int rc, void **buf, size_t *len) {
  if (rc == 0)
    rc = out_op(o, '.');
  if (rc < 0) {
    free(o->p);
    return rc;
  }
  *buf = o->p;
  *len = o->len;
  return 0;
}

int mp__pickle_dumps(const mp_value *v, void **buf, size_t *len) {
  pk_out o = {0};
  int rc = out_le(&o, 0x80, 4, 1); /* PROTO 4 */
  if (rc == 0)
    rc = write_value(&o, v, 1);
  return finish(&o, rc, buf, len);
}

int mp__pickle_dumps_pair(const char *kind, const mp_value *v, void **buf, size_t *len) {
  pk_out o = {0};
  int rc = out_le(&o, 0x80, 4, 1);
  if (rc == 0)
    rc = write_blob(&o, 1, kind, strlen(kind));
  if (rc == 0)
    rc = write_value(&o, v, 2);
  if (rc == 0)
    rc = out_op(&o, 0x86);
  return finish(&o, rc, buf, len);
}

/* The module and class each exception kind pickles as. */
static const struct {
  int kind;
  const char *module, *name;
} exc_classes[] = {
    {MP_PK_EXC_EMPTY, "queue", "Empty"},
    {MP_PK_EXC_EMPTY, "_queue", "Empty"}, /* where CPython defines it */
    {MP_PK_EXC_FULL, "queue", "Full"},
    {MP_PK_EXC_VALUE, "builtins", "ValueError"},
    {MP_PK_EXC_TYPE, "builtins", "TypeError"},
    {MP_PK_EXC_ATTRIBUTE, "builtins", "AttributeError"},
    {MP_PK_EXC_KEY, "builtins", "KeyError"},
    {MP_PK_EXC_RUNTIME, "builtins", "RuntimeError"},
    {MP_PK_EXC_EXCEPTION, "builtins", "Exception"},
};
#define N_EXC (sizeof exc_classes / sizeof exc_classes[0])

int mp__pickle_dumps_error(int kind, const char *msg, void **buf, size_t *len) {
  size_t k = 0;
  while (k < N_EXC && exc_classes[k].kind != kind)
    k++;
  if (k == N_EXC)
    return mp_set_error(MP_EINVAL, "pickle: unknown exception kind %d", kind);
  pk_out o = {0};
  char global[64];
  int n = snprintf(global, sizeof global, "c%s\n%s\n", exc_classes[k].module, exc_classes[k].name);
  int rc = out_le(&o, 0x80, 4, 1);
  if (rc == 0)
    rc = write_blob(&o, 1, "#ERROR", 6);
  if (rc == 0)
    rc = out_put(&o, global, (size_t)n);
  if (rc == 0 && msg != NULL && *msg) {
    rc = write_blob(&o, 1, msg, strlen(msg));
    if (rc == 0)
      rc = out_op(&o, 0x85);
  } else if (rc == 0) {
    rc = out_op(&o, ')');
  }
  if (rc == 0)
    rc = out_op(&o, 'R'); /* REDUCE: cls(*args) */
  if (rc == 0)
    rc = out_op(&o, 0x86);
  return finish(&o, rc, buf, len);
}

int mp__pickle_exc_lookup(const char *module, const char *name) {
  for (size_t k = 0; k < N_EXC; k++)
    if (strcmp(exc_classes[k].module, module) == 0 && strcmp(exc_classes[k].name, name) == 0)
      return exc_classes[k].kind;
  return 0;
}

const char *mp__pickle_exc_name(int kind) {
  for (size_t k = 0; k < N_EXC; k++)
    if (exc_classes[k].kind == kind)
      return exc_classes[k].name;
  return "exception";
}
