/* The pickle subset that Python's managers use for queues of plain values: a writer that
 * emits protocol 4 opcodes without frames, and a bounded reader for protocols 2-5.
 * The reader never executes anything: a global is looked up in a short allowlist of
 * exception classes (for '#ERROR' replies), the two callables protocol 2 uses for bytes
 * and multiprocessing.managers.Token (the argument of 'get_methods'), which NEWOBJ and
 * BUILD turn into its plain state tuple (typeid, address, id); everything else is an
 * error. Nesting depth and what memo references may expand
 * to are limited, so a hostile pickle costs at most a bounded amount of memory and time. */
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
  if (depth > MP_VALUE_MAX_DEPTH)
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

const char *mp__pickle_exc_name(int kind) {
  for (size_t k = 0; k < N_EXC; k++)
    if (exc_classes[k].kind == kind)
      return exc_classes[k].name;
  return "exception";
}

/* ---- reader ------------------------------------------------------------------------- */

/* SLOT_TOKEN: a Token made by NEWOBJ that BUILD has not filled in yet (no value). */
enum { SLOT_VALUE, SLOT_GLOBAL, SLOT_EXC, SLOT_TOKEN };
/* Globals that are not exception classes. */
enum { G_CODECS_ENCODE = 100, G_BYTES = 101, G_TOKEN = 102 };

typedef struct slot {
  int kind;
  int gid;     /* SLOT_GLOBAL: exception kind or G_*; SLOT_EXC: exception kind; SLOT_TOKEN: the
                  token's number, an index into pk_in.tokens */
  int depth;   /* SLOT_VALUE: containers nested in the value, 0 for a scalar */
  mp_value *v; /* SLOT_VALUE: owned while on the stack; SLOT_EXC: its message (or NULL) */
} slot;

typedef struct pk_in {
  const unsigned char *p, *end;
  slot *stack;
  size_t sp, cap;
  size_t *marks;
  size_t nmarks, mcap;
  slot *memo; /* values borrowed from the stack or from containers */
  size_t nmemo, memocap;
  mp_value **grave; /* values consumed by REDUCE, freed at the end: the memo may name them */
  size_t ngrave, gcap;
  uint64_t budget_nodes, budget_bytes; /* what memo references may still copy */
  /* Each token's value once BUILD filled it in (borrowed like the memo's), NULL before:
   * the memo holds a token as the unfinished NEWOBJ result and reads it through here. */
  mp_value **tokens;
  size_t ntokens, tokcap;
  mp__pk_exc *exc;
} pk_in;

static int bad(const char *fmt, const char *detail) { return mp_set_error(MP_EPROTO, fmt, detail); }

static int grow(void **arr, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap * 2 : 16;
  while (n < need)
    n *= 2;
  void *p = realloc(*arr, n * size);
  if (p == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory reading a pickle");
  *arr = p;
  *cap = n;
  return 0;
}

static int push(pk_in *r, slot s) {
  int rc = grow((void **)&r->stack, &r->cap, r->sp + 1, sizeof(slot));
  if (rc < 0) {
    if (s.kind != SLOT_GLOBAL)
      mp_value_free(s.v);
    return rc;
  }
  r->stack[r->sp++] = s;
  return 0;
}

static int push_value(pk_in *r, mp_value *v) {
  if (v == NULL)
    return mp_last_error_code() == MP_ENOMEM
               ? MP_ENOMEM
               : mp_set_error(MP_EPROTO, "pickle: bad text: %s", "not valid UTF-8");
  return push(r, (slot){SLOT_VALUE, 0, 0, v});
}

static int need(pk_in *r, size_t n, const unsigned char **at) {
  if ((size_t)(r->end - r->p) < n)
    return bad("pickle: %s", "truncated data");
  *at = r->p;
  r->p += n;
  return 0;
}

static uint64_t le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static int read_len(pk_in *r, int n, size_t *len) {
  const unsigned char *at = NULL;
  int rc = need(r, (size_t)n, &at);
  if (rc < 0)
    return rc;
  uint64_t v = le(at, n);
  if (v > (uint64_t)(r->end - r->p))
    return bad("pickle: %s", "a length runs past the end of the data");
  *len = (size_t)v;
  return 0;
}

static int op_blob(pk_in *r, int is_str, int nlen) {
  size_t n = 0;
  const unsigned char *at = NULL;
  int rc = read_len(r, nlen, &n);
  if (rc == 0)
    rc = need(r, n, &at);
  if (rc < 0)
    return rc;
  return push_value(r, is_str ? mp_value_strn((const char *)at, n) : mp_value_bytes(at, n));
}

static int op_int(pk_in *r, int n, int is_signed) {
  const unsigned char *at = NULL;
  int rc = need(r, (size_t)n, &at);
  if (rc < 0)
    return rc;
  uint64_t v = le(at, n);
  int64_t i = is_signed ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v;
  return push_value(r, mp_value_int(i));
}

/* LONG1/LONG4: little-endian two's complement of any length; only 64 bits fit. */
static int op_long(pk_in *r, int nlen) {
  size_t n = 0;
  const unsigned char *at = NULL;
  int rc = read_len(r, nlen, &n);
  if (rc == 0)
    rc = need(r, n, &at);
  if (rc < 0)
    return rc;
  if (n > 8)
    return mp_set_error(MP_EPROTO, "pickle: an integer of %zu bytes does not fit in 64 bits", n);
  uint64_t v = n ? le(at, (int)n) : 0;
  if (n > 0 && n < 8 && (at[n - 1] & 0x80))
    v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
  return push_value(r, mp_value_int((int64_t)v));
}

static int op_float(pk_in *r) {
  const unsigned char *at = NULL;
  int rc = need(r, 8, &at);
  if (rc < 0)
    return rc;
  uint64_t bits = 0;
  for (int i = 0; i < 8; i++)
    bits = (bits << 8) | at[i];
  double d;
  memcpy(&d, &bits, sizeof d);
  return push_value(r, mp_value_double(d));
}

static int op_mark(pk_in *r) {
  int rc = grow((void **)&r->marks, &r->mcap, r->nmarks + 1, sizeof(size_t));
  if (rc == 0)
    r->marks[r->nmarks++] = r->sp;
  return rc;
}

static int pop_mark(pk_in *r, size_t *at) {
  if (r->nmarks == 0)
    return bad("pickle: %s", "an opcode needs a MARK that is not there");
  *at = r->marks[--r->nmarks];
  return 0;
}

/* Adds stack slot s to container c (which takes ownership), tracking depth. An exception
 * instance becomes None in place and is reported through r->exc: only a reply carries one. */
static int adopt(pk_in *r, slot *c, slot *s, mp_value **item) {
  if (s->kind == SLOT_GLOBAL)
    return bad("pickle: %s", "a class cannot be a value here");
  if (s->kind == SLOT_TOKEN)
    return bad("pickle: %s", "a Token without its state (NEWOBJ with no BUILD)");
  if (s->kind == SLOT_EXC) {
    if (r->exc && r->exc->kind == MP_PK_EXC_NONE) {
      r->exc->kind = s->gid;
      const char *m = "";
      size_t n = 0;
      if (s->v)
        mp_value_get_str(s->v, &m, &n);
      snprintf(r->exc->msg, sizeof r->exc->msg, "%.*s", (int)n, m);
    }
    /* The message may be in the memo too: bury it rather than free it. */
    if (s->v && grow((void **)&r->grave, &r->gcap, r->ngrave + 1, sizeof(mp_value *)) < 0)
      return MP_ENOMEM;
    if (s->v)
      r->grave[r->ngrave++] = s->v;
    s->kind = SLOT_VALUE;
    s->v = mp_value_nil();
    if (s->v == NULL)
      return MP_ENOMEM;
  }
  if (s->depth + 1 > c->depth)
    c->depth = s->depth + 1;
  if (c->depth > MP_VALUE_MAX_DEPTH)
    return mp_set_error(MP_EPROTO, "pickle: containers nested deeper than %d", MP_VALUE_MAX_DEPTH);
  *item = s->v;
  s->v = NULL;
  return 0;
}

/* Moves stack[from..sp) into the container at c. */
static int fill(pk_in *r, slot *c, size_t from, int dict) {
  size_t n = r->sp - from;
  if (dict && n % 2)
    return bad("pickle: %s", "SETITEMS with an odd number of items");
  int rc = 0;
  for (size_t i = from; i < r->sp && rc == 0; i += dict ? 2 : 1) {
    mp_value *a = NULL, *b = NULL;
    rc = adopt(r, c, &r->stack[i], &a);
    if (rc == 0 && dict)
      rc = adopt(r, c, &r->stack[i + 1], &b);
    if (rc == 0)
      rc = dict ? mp_value_dict_set(c->v, a, b) : mp_value_append(c->v, a);
    else
      mp_value_free(a);
  }
  for (size_t i = from; i < r->sp; i++)
    if (r->stack[i].kind != SLOT_GLOBAL)
      mp_value_free(r->stack[i].v);
  r->sp = from;
  return rc;
}

static int op_tuple(pk_in *r, size_t from) {
  if (from > r->sp)
    return bad("pickle: %s", "stack underflow");
  slot t = {SLOT_VALUE, 0, 1, mp_value_tuple()};
  if (t.v == NULL)
    return MP_ENOMEM;
  int rc = fill(r, &t, from, 0);
  if (rc < 0) {
    mp_value_free(t.v);
    return rc;
  }
  return push(r, t);
}

static int op_container(pk_in *r, int type, int with_mark) {
  size_t from = r->sp;
  int rc = with_mark ? pop_mark(r, &from) : 0;
  if (rc < 0)
    return rc;
  if (type == MP_VALUE_TUPLE)
    return op_tuple(r, from);
  slot c = {SLOT_VALUE, 0, 1, type == MP_VALUE_LIST ? mp_value_list() : mp_value_dict()};
  if (c.v == NULL)
    return MP_ENOMEM;
  rc = fill(r, &c, from, type == MP_VALUE_DICT);
  if (rc < 0) {
    mp_value_free(c.v);
    return rc;
  }
  return push(r, c);
}

/* APPEND/APPENDS/SETITEM/SETITEMS: add to the list or dict just below the items. */
static int op_add(pk_in *r, int dict, int with_mark) {
  size_t from = 0;
  int rc = 0;
  if (with_mark)
    rc = pop_mark(r, &from);
  else if (r->sp < (size_t)(dict ? 3 : 2))
    return bad("pickle: %s", "stack underflow");
  else
    from = r->sp - (dict ? 2 : 1);
  if (rc < 0)
    return rc;
  if (from == 0)
    return bad("pickle: %s", "nothing to add items to");
  slot *c = &r->stack[from - 1];
  int want = dict ? MP_VALUE_DICT : MP_VALUE_LIST;
  if (c->kind != SLOT_VALUE || mp_value_type_of(c->v) != want)
    return bad("pickle: %s", dict ? "SETITEM(S) on something that is not a dict"
                                  : "APPEND(S) on something that is not a list");
  return fill(r, c, from, dict);
}

/* Protocols 0-2 write Python 2's module names (pickle's fix_imports). */
static const char *py3_module(const char *m) {
  if (strcmp(m, "__builtin__") == 0 || strcmp(m, "exceptions") == 0)
    return "builtins";
  return strcmp(m, "Queue") == 0 ? "queue" : m;
}

static int lookup_global(const char *module, const char *name) {
  module = py3_module(module);
  for (size_t k = 0; k < N_EXC; k++)
    if (strcmp(exc_classes[k].module, module) == 0 && strcmp(exc_classes[k].name, name) == 0)
      return exc_classes[k].kind;
  if (strcmp(module, "_codecs") == 0 && strcmp(name, "encode") == 0)
    return G_CODECS_ENCODE;
  if (strcmp(module, "builtins") == 0 && strcmp(name, "bytes") == 0)
    return G_BYTES;
  if (strcmp(module, "multiprocessing.managers") == 0 && strcmp(name, "Token") == 0)
    return G_TOKEN;
  return -1;
}

static int push_global(pk_in *r, const char *module, size_t mlen, const char *name, size_t nlen) {
  char m[64], n[64];
  if (mlen >= sizeof m || nlen >= sizeof n || memchr(module, 0, mlen) || memchr(name, 0, nlen))
    return bad("pickle: %s", "refusing a global with an over-long or odd name");
  memcpy(m, module, mlen);
  m[mlen] = 0;
  memcpy(n, name, nlen);
  n[nlen] = 0;
  int gid = lookup_global(m, n);
  if (gid < 0)
    return mp_set_error(MP_EPROTO, "pickle: refusing global %s.%s (not in the allowlist)", m, n);
  return push(r, (slot){SLOT_GLOBAL, gid, 0, NULL});
}

/* GLOBAL: "module\nname\n" (protocols 0-3). */
static int op_global(pk_in *r) {
  const unsigned char *m = r->p, *nl1 = memchr(m, '\n', (size_t)(r->end - m));
  const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(r->end - nl1 - 1)) : NULL;
  if (nl2 == NULL)
    return bad("pickle: %s", "truncated GLOBAL");
  r->p = nl2 + 1;
  return push_global(r, (const char *)m, (size_t)(nl1 - m), (const char *)nl1 + 1,
                     (size_t)(nl2 - nl1 - 1));
}

static int op_stack_global(pk_in *r) {
  if (r->sp < 2)
    return bad("pickle: %s", "stack underflow");
  slot *a = &r->stack[r->sp - 2], *b = a + 1;
  const char *m, *n;
  size_t ml, nl;
  if (a->kind != SLOT_VALUE || b->kind != SLOT_VALUE || mp_value_get_str(a->v, &m, &ml) < 0 ||
      mp_value_get_str(b->v, &n, &nl) < 0)
    return bad("pickle: %s", "STACK_GLOBAL needs two strings");
  /* The strings may be in the memo: bury them rather than free them. */
  int rc = grow((void **)&r->grave, &r->gcap, r->ngrave + 2, sizeof(mp_value *));
  if (rc < 0)
    return rc;
  r->grave[r->ngrave++] = a->v;
  r->grave[r->ngrave++] = b->v;
  r->sp -= 2;
  return push_global(r, m, ml, n, nl);
}

/* bytes from protocol 2: _codecs.encode(text, 'latin1'), each code point one byte. */
static mp_value *latin1_bytes(const mp_value *args) {
  mp_value *text, *enc;
  size_t n, encn;
  const char *s, *e;
  if (mp_value_len(args, &n) < 0 || n != 2 || mp_value_at(args, 0, &text) < 0 ||
      mp_value_at(args, 1, &enc) < 0 || mp_value_get_str(text, &s, &n) < 0 ||
      mp_value_get_str(enc, &e, &encn) < 0 || strcmp(e, "latin1") != 0)
    return NULL;
  unsigned char *out = malloc(n ? n : 1);
  size_t k = 0;
  for (size_t i = 0; out && i < n; k++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
      out[k] = c;
      i++;
    } else if ((c == 0xc2 || c == 0xc3) && i + 1 < n) {
      out[k] = (unsigned char)(((c & 0x1f) << 6) | ((unsigned char)s[i + 1] & 0x3f));
      i += 2;
    } else {
      free(out);
      return NULL;
    }
  }
  mp_value *v = out ? mp_value_bytes(out, k) : NULL;
  free(out);
  return v;
}

/* REDUCE on an allowlisted global: build an exception instance or bytes. */
static int op_reduce(pk_in *r) {
  if (r->sp < 2)
    return bad("pickle: %s", "stack underflow");
  slot *g = &r->stack[r->sp - 2], *a = g + 1;
  if (g->kind != SLOT_GLOBAL || g->gid == G_TOKEN || a->kind != SLOT_VALUE ||
      mp_value_type_of(a->v) != MP_VALUE_TUPLE)
    return bad("pickle: %s", "REDUCE needs an allowed class and an argument tuple");
  int rc = grow((void **)&r->grave, &r->gcap, r->ngrave + 1, sizeof(mp_value *));
  if (rc < 0)
    return rc;
  mp_value *args = a->v;
  r->grave[r->ngrave++] = args;
  int gid = g->gid;
  r->sp -= 2;
  size_t n = 0;
  mp_value_len(args, &n);
  if (gid == G_BYTES) {
    if (n != 0)
      return bad("pickle: %s", "bytes() with arguments");
    return push_value(r, mp_value_bytes("", 0));
  }
  if (gid == G_CODECS_ENCODE) {
    mp_value *b = latin1_bytes(args);
    return b ? push_value(r, b) : bad("pickle: %s", "unexpected _codecs.encode arguments");
  }
  mp_value *first = NULL, *msg = NULL;
  if (n >= 1 && mp_value_at(args, 0, &first) == 0 && mp_value_type_of(first) == MP_VALUE_STR) {
    const char *s;
    size_t sl;
    mp_value_get_str(first, &s, &sl);
    msg = mp_value_strn(s, sl);
    if (msg == NULL)
      return MP_ENOMEM;
  }
  return push(r, (slot){SLOT_EXC, gid, 0, msg});
}

/* NEWOBJ: cls.__new__(cls, *args), for Token only and with no arguments (copyreg's
 * __reduce_ex__ for a class with __getstate__); BUILD then gives it its state. */
static int op_newobj(pk_in *r) {
  if (r->sp < 2)
    return bad("pickle: %s", "stack underflow");
  slot *g = &r->stack[r->sp - 2], *a = g + 1;
  size_t n = 1;
  if (a->kind == SLOT_VALUE && mp_value_type_of(a->v) == MP_VALUE_TUPLE)
    mp_value_len(a->v, &n);
  if (g->kind != SLOT_GLOBAL || g->gid != G_TOKEN || n != 0)
    return bad("pickle: %s", "NEWOBJ is only allowed for multiprocessing.managers.Token()");
  if (r->ntokens >= INT_MAX) /* a token's number must fit slot.gid */
    return bad("pickle: %s", "too many Tokens");
  int rc = grow((void **)&r->grave, &r->gcap, r->ngrave + 1, sizeof(mp_value *));
  if (rc == 0)
    rc = grow((void **)&r->tokens, &r->tokcap, r->ntokens + 1, sizeof(mp_value *));
  if (rc < 0)
    return rc;
  r->grave[r->ngrave++] = a->v; /* the memo may name the empty tuple */
  r->sp -= 2;
  r->tokens[r->ntokens] = NULL;
  return push(r, (slot){SLOT_TOKEN, (int)r->ntokens++, 0, NULL});
}

/* Token.__setstate__'s state: (typeid, address, id) with typeid and id strings. */
static int token_state_ok(const mp_value *t) {
  size_t n = 0;
  mp_value *typeid, *id;
  return mp_value_type_of(t) == MP_VALUE_TUPLE && mp_value_len(t, &n) == 0 && n == 3 &&
         mp_value_at(t, 0, &typeid) == 0 && mp_value_type_of(typeid) == MP_VALUE_STR &&
         mp_value_at(t, 2, &id) == 0 && mp_value_type_of(id) == MP_VALUE_STR;
}

/* BUILD on a fresh Token: the token becomes its state tuple, a plain value. */
static int op_build(pk_in *r) {
  if (r->sp < 2)
    return bad("pickle: %s", "stack underflow");
  slot *t = &r->stack[r->sp - 2], *st = t + 1;
  if (t->kind != SLOT_TOKEN)
    return bad("pickle: %s", "BUILD is only allowed on a new multiprocessing.managers.Token");
  if (st->kind != SLOT_VALUE || !token_state_ok(st->v))
    return bad("pickle: %s", "a Token's state is not (typeid, address, id)");
  r->tokens[t->gid] = st->v;
  *t = *st;
  r->sp--;
  return 0;
}

static int op_memo_put(pk_in *r, uint64_t idx) {
  if (r->sp == 0)
    return bad("pickle: %s", "memoizing an empty stack");
  if (idx > r->nmemo)
    return bad("pickle: %s", "memo index out of order");
  int rc = grow((void **)&r->memo, &r->memocap, r->nmemo + 1, sizeof(slot));
  if (rc < 0)
    return rc;
  r->memo[idx] = r->stack[r->sp - 1];
  if (idx == r->nmemo)
    r->nmemo++;
  return 0;
}

/* Copies v for a memo reference, failing past the depth limit or the expansion budget. */
static int copy_bounded(pk_in *r, const mp_value *v, int level, mp_value **out, int *depth) {
  if (r->budget_nodes == 0)
    return bad("pickle: %s", "memo references expand past the size limit");
  r->budget_nodes--;
  int type = mp_value_type_of(v);
  const void *p;
  size_t n = 0;
  *depth = 0;
  if (type == MP_VALUE_STR || type == MP_VALUE_BYTES) {
    type == MP_VALUE_STR ? mp_value_get_str(v, (const char **)&p, &n)
                         : mp_value_get_bytes(v, &p, &n);
    if (n > r->budget_bytes)
      return bad("pickle: %s", "memo references expand past the size limit");
    r->budget_bytes -= n;
    *out = type == MP_VALUE_STR ? mp_value_strn(p, n) : mp_value_bytes(p, n);
    return *out ? 0 : MP_ENOMEM;
  }
  if (type != MP_VALUE_LIST && type != MP_VALUE_TUPLE && type != MP_VALUE_DICT) {
    *out = mp_value_copy(v);
    return *out ? 0 : mp_last_error_code();
  }
  if (level > MP_VALUE_MAX_DEPTH)
    return mp_set_error(MP_EPROTO, "pickle: containers nested deeper than %d", MP_VALUE_MAX_DEPTH);
  *out = type == MP_VALUE_LIST    ? mp_value_list()
         : type == MP_VALUE_TUPLE ? mp_value_tuple()
                                  : mp_value_dict();
  if (*out == NULL)
    return MP_ENOMEM;
  mp_value_len(v, &n);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    mp_value *k = NULL, *item = NULL, *ck = NULL, *ci = NULL;
    int d1 = 0, d2 = 0;
    if (type == MP_VALUE_DICT) {
      mp_value_dict_at(v, i, &k, &item);
      rc = copy_bounded(r, k, level + 1, &ck, &d1);
    } else {
      mp_value_at(v, i, &item);
    }
    if (rc == 0)
      rc = copy_bounded(r, item, level + 1, &ci, &d2);
    if (rc == 0)
      rc = type == MP_VALUE_DICT ? mp_value_dict_set(*out, ck, ci) : mp_value_append(*out, ci);
    else {
      mp_value_free(ck);
      mp_value_free(ci);
    }
    int d = (d1 > d2 ? d1 : d2) + 1;
    if (d > *depth)
      *depth = d;
  }
  if (n == 0)
    *depth = 1;
  if (rc < 0) {
    mp_value_free(*out);
    *out = NULL;
  }
  return rc;
}

static int op_memo_get(pk_in *r, uint64_t idx) {
  if (idx >= r->nmemo)
    return bad("pickle: %s", "reference to a memo entry that does not exist");
  slot m = r->memo[idx];
  if (m.kind == SLOT_GLOBAL)
    return push(r, m);
  if (m.kind == SLOT_TOKEN) { /* the NEWOBJ result: by now it should have its state */
    if (r->tokens[m.gid] == NULL)
      return bad("pickle: %s", "a reference to a Token before its BUILD");
    m = (slot){SLOT_VALUE, 0, 0, r->tokens[m.gid]};
  }
  mp_value *copy = NULL;
  int depth = 0;
  int rc = m.v ? copy_bounded(r, m.v, 1, &copy, &depth) : 0;
  if (rc < 0)
    return rc;
  return push(r, (slot){m.kind, m.gid, depth, copy});
}

static int op_memo(pk_in *r, unsigned char op) {
  const unsigned char *at = NULL;
  int n = (op == 'q' || op == 'h') ? 1 : (op == 'r' || op == 'j') ? 4 : 0;
  int rc = n ? need(r, (size_t)n, &at) : 0;
  if (rc < 0)
    return rc;
  uint64_t idx = n ? le(at, n) : r->nmemo;
  return (op == 'h' || op == 'j') ? op_memo_get(r, idx) : op_memo_put(r, idx);
}

static int op_frame_or_proto(pk_in *r, unsigned char op) {
  const unsigned char *at = NULL;
  int rc = need(r, op == 0x80 ? 1 : 8, &at);
  if (rc == 0 && op == 0x80 && (at[0] < 2 || at[0] > 5))
    return mp_set_error(MP_EPROTO, "pickle: protocol %d is not supported (2 to 5 are)", at[0]);
  return rc; /* FRAME is only a hint for buffering: the whole pickle is in memory */
}

static int step(pk_in *r, unsigned char op) {
  switch (op) {
  case 0x80:
  case 0x95: return op_frame_or_proto(r, op);
  case 'N': return push_value(r, mp_value_nil());
  case 0x88: return push_value(r, mp_value_bool(1));
  case 0x89: return push_value(r, mp_value_bool(0));
  case 'J': return op_int(r, 4, 1);
  case 'K': return op_int(r, 1, 0);
  case 'M': return op_int(r, 2, 0);
  case 0x8a: return op_long(r, 1);
  case 0x8b: return op_long(r, 4);
  case 'G': return op_float(r);
  case 0x8c: return op_blob(r, 1, 1);
  case 'X': return op_blob(r, 1, 4);
  case 0x8d: return op_blob(r, 1, 8);
  case 'C': return op_blob(r, 0, 1);
  case 'B': return op_blob(r, 0, 4);
  case 0x8e: return op_blob(r, 0, 8);
  case '(': return op_mark(r);
  case ')': return op_tuple(r, r->sp);
  case 0x85:
  case 0x86:
  case 0x87:
    return r->sp < (size_t)(op - 0x84) ? bad("pickle: %s", "stack underflow")
                                       : op_tuple(r, r->sp - (size_t)(op - 0x84));
  case 't': return op_container(r, MP_VALUE_TUPLE, 1);
  case ']': return op_container(r, MP_VALUE_LIST, 0);
  case 'l': return op_container(r, MP_VALUE_LIST, 1);
  case '}': return op_container(r, MP_VALUE_DICT, 0);
  case 'd': return op_container(r, MP_VALUE_DICT, 1);
  case 'a': return op_add(r, 0, 0);
  case 'e': return op_add(r, 0, 1);
  case 's': return op_add(r, 1, 0);
  case 'u': return op_add(r, 1, 1);
  case 0x94:
  case 'q':
  case 'r':
  case 'h':
  case 'j': return op_memo(r, op);
  case 'c': return op_global(r);
  case 0x93: return op_stack_global(r);
  case 'R': return op_reduce(r);
  case 0x81: return op_newobj(r);
  case 'b': return op_build(r);
  default: return mp_set_error(MP_EPROTO, "pickle: opcode 0x%02x is not supported", op);
  }
}

static void reader_free(pk_in *r) {
  for (size_t i = 0; i < r->sp; i++)
    if (r->stack[i].kind != SLOT_GLOBAL)
      mp_value_free(r->stack[i].v);
  for (size_t i = 0; i < r->ngrave; i++)
    mp_value_free(r->grave[i]);
  free(r->stack);
  free(r->marks);
  free(r->memo);
  free(r->grave);
  free(r->tokens);
}

static int load(pk_in *r, mp_value **out) {
  while (r->p < r->end) {
    unsigned char op = *r->p++;
    if (op == '.') {
      if (r->sp != 1 || r->nmarks != 0)
        return bad("pickle: %s", "STOP with a stack that does not hold exactly one value");
      slot top = {SLOT_VALUE, 0, 0, mp_value_tuple()}; /* adopt() turns an exception into None */
      if (top.v == NULL)
        return MP_ENOMEM;
      mp_value *v = NULL;
      int rc = adopt(r, &top, &r->stack[0], &v);
      mp_value_free(top.v);
      if (rc < 0)
        return rc;
      r->sp = 0;
      if (r->p != r->end) {
        mp_value_free(v);
        return bad("pickle: %s", "bytes after STOP");
      }
      *out = v;
      return 0;
    }
    int rc = step(r, op);
    if (rc < 0)
      return rc;
  }
  return bad("pickle: %s", "truncated data (no STOP)");
}

int mp__pickle_loads(const void *buf, size_t len, mp_value **out, mp__pk_exc *exc) {
  if (buf == NULL || out == NULL)
    return mp_set_error(MP_EINVAL, "mp__pickle_loads: buf or out is NULL");
  pk_in r = {0};
  r.p = buf;
  r.end = r.p + len;
  r.exc = exc;
  r.budget_nodes = MP_PICKLE_MEMO_NODES;
  r.budget_bytes = (uint64_t)len * 4 + (1u << 20);
  if (exc)
    memset(exc, 0, sizeof *exc);
  int rc = load(&r, out);
  reader_free(&r);
  return rc;
}
