/* The pickle reader of the manager protocol: protocols 2 to 5, for the values of the subset
 * (None, bool, 64-bit int, float, str, bytes, tuple, list, dict), the exceptions replies
 * carry and a manager's Token. It never executes anything and works in two passes:
 *
 *  1. The opcodes build a graph in an arena: nodes (str and bytes point into the input),
 *     links (container items), a stack of node numbers with CPython's marks (no opcode may
 *     pop below the topmost MARK: the "fence" of _pickle.c), and a memo of node numbers.
 *     Nothing is freed, moved or copied while reading, so nothing can point at freed
 *     memory, and a memo reference is one more link to the same node, as in CPython.
 *  2. At STOP the graph becomes an mp_value tree. A node reached twice is copied (each copy
 *     counted against the budget); a container met again on its own path (a list that
 *     contains itself) is refused, since a tree cannot hold it; dict keys are checked
 *     hashable and distinct by sorting them (O(n log n) comparisons whatever the keys:
 *     no hash function an attacker could collide).
 *
 * Every count and length is checked against the bytes left before anything is made, and
 * each node costs at least one byte of input, so pass 1 is linear in the input; pass 2 is
 * bounded by the value budget (mp__pk_read.max_values) and the byte budget. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pickle.h"
#include "platform.h"
#include "value.h"

/* What a node is. The first three nodes of every arena are None, True and False. */
enum {
  K_NONE,
  K_TRUE,
  K_FALSE,
  K_INT,
  K_FLOAT,
  K_STR,
  K_BYTES,
  K_LIST,
  K_TUPLE,
  K_DICT,
  K_GLOBAL, /* an allowlisted class or function: only the callee of REDUCE or NEWOBJ */
  K_EXC,    /* an exception instance: None in place, reported through mp__pk_read.exc */
  K_TOKEN   /* multiprocessing.managers.Token from NEWOBJ; BUILD gives it its state */
};
/* Globals that are not exception classes (K_GLOBAL's gid). */
enum { G_CODECS_ENCODE = 100, G_BYTES, G_TOKEN };

#define NO_ID UINT32_MAX
#define CANCEL_EVERY 4096 /* steps between two looks at the cancel flag */

typedef struct node {
  unsigned char kind;
  unsigned char on_path; /* pass 2: being converted; meeting it again is a cycle */
  unsigned char owned;   /* K_BYTES: u.blob indexes rd->owned rather than the input */
  unsigned char built;   /* K_TOKEN: BUILD gave it its state, u.c.head */
  uint32_t n;            /* containers: items (dict: pairs) */
  union {
    int64_t i;
    double d;
    struct {
      uint32_t off, len;
    } blob;
    struct {
      uint32_t head, tail; /* links; a dict's are key, value, key, value... */
    } c;
    struct {
      int32_t gid;  /* K_GLOBAL, K_EXC: MP_PK_EXC_* or G_* */
      uint32_t msg; /* K_EXC: the message's node (a K_STR) or NO_ID */
    } g;
  } u;
} node;

typedef struct link {
  uint32_t node, next;
} link;

typedef struct rd {
  const unsigned char *base, *p, *end;
  node *nodes;
  size_t nnodes, ncap, max_nodes;
  link *links;
  size_t nlinks, lcap;
  uint32_t *stack;
  size_t sp, scap;
  size_t *marks;
  size_t nmarks, mcap;
  uint32_t *memo;
  size_t nmemo, memocap;
  unsigned char *owned; /* bytes made by _codecs.encode (protocol 2's bytes) */
  size_t nowned, ocap;
  /* pass 2 */
  size_t values_left, cmp_left;
  uint64_t bytes_left;
  unsigned steps;
  mp__pk_read *io;
} rd;

/* ---- errors ------------------------------------------------------------------------- */

static int malformed(const char *what) { return mp_set_error(MP_EPROTO, "pickle: %s", what); }

/* A refusal of a value: kind says which Python exception the server answers with. */
static int refuse(rd *r, int kind, const char *fmt, const char *detail) {
  char msg[200];
  snprintf(msg, sizeof msg, fmt, detail);
  r->io->refusal = kind;
  return mp_set_error(MP_EPROTO, "pickle: %s", msg);
}

static int cancelled(rd *r) {
  if (++r->steps % CANCEL_EVERY || r->io->cancel == NULL ||
      mp_plat_atomic_add(r->io->cancel, 0) == 0)
    return 0;
  return mp_set_error(MP_ECANCELED, "pickle: reading stopped (the server is shutting down)");
}

/* ---- the arena ---------------------------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap * 2 : 64;
  while (n < need)
    n *= 2;
  void *p = realloc(*arr, n * size);
  if (p == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory reading a pickle");
  *arr = p;
  *cap = n;
  return 0;
}

/* Pass 1 keeps at most max_nodes nodes, links and stack slots. */
static int over_budget(rd *r) {
  return refuse(r, MP_PK_EXC_VALUE, "the pickle makes more values than its %s allows",
                "size limit");
}

/* A new node of kind (zeroed otherwise); *id receives its number. */
static int new_node(rd *r, int kind, uint32_t *id) {
  if (r->nnodes >= r->max_nodes)
    return over_budget(r);
  int rc = grow((void **)&r->nodes, &r->ncap, r->nnodes + 1, sizeof(node));
  if (rc < 0)
    return rc;
  node *n = &r->nodes[r->nnodes];
  memset(n, 0, sizeof *n);
  n->kind = (unsigned char)kind;
  if ((kind >= K_LIST && kind <= K_DICT) || kind == K_TOKEN) /* u.c aliases the blob */
    n->u.c.head = n->u.c.tail = NO_ID;
  *id = (uint32_t)r->nnodes++;
  return 0;
}

/* Appends child to container c's links. */
static int add_link(rd *r, uint32_t c, uint32_t child) {
  if (r->nlinks >= r->max_nodes)
    return over_budget(r);
  int rc = grow((void **)&r->links, &r->lcap, r->nlinks + 1, sizeof(link));
  if (rc < 0)
    return rc;
  uint32_t l = (uint32_t)r->nlinks++;
  r->links[l] = (link){child, NO_ID};
  node *n = &r->nodes[c];
  if (n->u.c.tail == NO_ID)
    n->u.c.head = l;
  else
    r->links[n->u.c.tail].next = l;
  n->u.c.tail = l;
  return 0;
}

static int push(rd *r, uint32_t id) {
  if (r->sp >= r->max_nodes)
    return over_budget(r);
  int rc = grow((void **)&r->stack, &r->scap, r->sp + 1, sizeof(uint32_t));
  if (rc == 0)
    r->stack[r->sp++] = id;
  return rc;
}

static int push_new(rd *r, int kind, uint32_t *id) {
  int rc = new_node(r, kind, id);
  return rc < 0 ? rc : push(r, *id);
}

/* The fence: no opcode may take items from below the topmost MARK (_pickle.c's rule). */
static size_t fence(const rd *r) { return r->nmarks ? r->marks[r->nmarks - 1] : 0; }

/* Checks that the k topmost items are above the fence. */
static int need_items(rd *r, size_t k) {
  if (r->sp - fence(r) >= k)
    return 0;
  return malformed(r->nmarks ? "an opcode pops past a MARK (stack underflow)" : "stack underflow");
}

static node *top(rd *r, size_t i) { return &r->nodes[r->stack[r->sp - 1 - i]]; }

/* Pops the topmost MARK: *from is where its items start. */
static int pop_mark(rd *r, size_t *from) {
  if (r->nmarks == 0)
    return malformed("an opcode needs a MARK that is not there");
  *from = r->marks[--r->nmarks];
  return 0;
}

/* ---- pass 1: operands ----------------------------------------------------------------- */

static int take(rd *r, size_t n, const unsigned char **at) {
  if ((size_t)(r->end - r->p) < n)
    return malformed("truncated data");
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

/* A length of n bytes, checked against the bytes left before anything uses it. */
static int take_len(rd *r, int n, size_t *len) {
  const unsigned char *at = NULL;
  int rc = take(r, (size_t)n, &at);
  if (rc < 0)
    return rc;
  uint64_t v = le(at, n);
  if (v > (uint64_t)(r->end - r->p))
    return malformed("a length runs past the end of the data");
  *len = (size_t)v;
  return 0;
}

static int op_blob(rd *r, int kind, int nlen) {
  size_t n = 0;
  const unsigned char *at = NULL;
  uint32_t id = 0;
  int rc = take_len(r, nlen, &n);
  if (rc == 0)
    rc = take(r, n, &at);
  if (rc == 0)
    rc = push_new(r, kind, &id);
  if (rc == 0) {
    r->nodes[id].u.blob.off = (uint32_t)(at - r->base);
    r->nodes[id].u.blob.len = (uint32_t)n;
  }
  return rc;
}

static int push_int(rd *r, int64_t i) {
  uint32_t id = 0;
  int rc = push_new(r, K_INT, &id);
  if (rc == 0)
    r->nodes[id].u.i = i;
  return rc;
}

static int op_int(rd *r, int n, int is_signed) {
  const unsigned char *at = NULL;
  int rc = take(r, (size_t)n, &at);
  if (rc < 0)
    return rc;
  uint64_t v = le(at, n);
  return push_int(r, is_signed ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v);
}

/* LONG1/LONG4: little-endian two's complement of any length; the value must fit 64 bits
 * (bytes past the eighth may only repeat the sign). */
static int op_long(rd *r, int nlen) {
  size_t n = 0;
  const unsigned char *at = NULL;
  int rc = take_len(r, nlen, &n);
  if (rc == 0)
    rc = take(r, n, &at);
  if (rc < 0)
    return rc;
  size_t low = n < 8 ? n : 8;
  uint64_t v = low ? le(at, (int)low) : 0;
  int neg = n > 0 && (at[n - 1] & 0x80);
  if (low > 0 && low < 8 && neg)
    v |= ~(uint64_t)0 << (8 * low); /* sign-extend */
  int fits = n <= 8 || (((v >> 63) != 0) == neg);
  for (size_t i = 8; fits && i < n; i++)
    fits = at[i] == (neg ? 0xff : 0x00);
  if (!fits)
    return refuse(r, MP_PK_EXC_VALUE, "an integer of %s does not fit in 64 bits", "that size");
  return push_int(r, (int64_t)v);
}

static int op_float(rd *r) {
  const unsigned char *at = NULL;
  uint32_t id = 0;
  int rc = take(r, 8, &at);
  if (rc == 0)
    rc = push_new(r, K_FLOAT, &id);
  if (rc < 0)
    return rc;
  uint64_t bits = 0;
  for (int i = 0; i < 8; i++)
    bits = (bits << 8) | at[i];
  memcpy(&r->nodes[id].u.d, &bits, sizeof bits);
  return 0;
}

static int op_proto_or_frame(rd *r, unsigned char op) {
  const unsigned char *at = NULL;
  int rc = take(r, op == 0x80 ? 1 : 8, &at);
  if (rc < 0)
    return rc;
  if (op == 0x80 && (at[0] < 2 || at[0] > 5))
    return mp_set_error(MP_EPROTO, "pickle: protocol %d is not supported (2 to 5 are)", at[0]);
  if (op == 0x95 && le(at, 8) > (uint64_t)(r->end - r->p))
    return malformed("a FRAME runs past the end of the data");
  return 0; /* FRAME is only a hint for buffering: the whole pickle is in memory */
}

/* ---- pass 1: containers ------------------------------------------------------------- */

/* Moves the items stack[from..sp) into container c (by links), leaving the stack at from. */
static int fill(rd *r, uint32_t c, size_t from, int dict) {
  size_t n = r->sp - from;
  if (dict && n % 2)
    return malformed("SETITEMS or DICT with an odd number of items");
  for (size_t i = from; i < r->sp; i++) {
    int rc = add_link(r, c, r->stack[i]);
    if (rc < 0)
      return rc;
  }
  r->nodes[c].n += (uint32_t)(dict ? n / 2 : n);
  r->sp = from;
  return 0;
}

/* A new container of kind holding stack[from..sp). */
static int make_container(rd *r, int kind, size_t from) {
  uint32_t id = 0;
  int rc = new_node(r, kind, &id);
  if (rc == 0)
    rc = fill(r, id, from, kind == K_DICT);
  return rc < 0 ? rc : push(r, id);
}

static int op_tuple_n(rd *r, size_t k) {
  int rc = need_items(r, k);
  return rc < 0 ? rc : make_container(r, K_TUPLE, r->sp - k);
}

static int op_with_mark(rd *r, int kind) {
  size_t from = 0;
  int rc = pop_mark(r, &from);
  return rc < 0 ? rc : make_container(r, kind, from);
}

/* APPEND/APPENDS/SETITEM/SETITEMS: add the items to the list or dict just below them. */
static int op_add(rd *r, int dict, int with_mark) {
  size_t from = 0;
  int rc = 0;
  if (with_mark)
    rc = pop_mark(r, &from);
  else if ((rc = need_items(r, dict ? 3 : 2)) == 0)
    from = r->sp - (dict ? 2 : 1);
  if (rc < 0)
    return rc;
  if (from <= fence(r)) /* the target would be below the fence, or there is none */
    return malformed(from == 0 ? "nothing to add items to (stack underflow)"
                               : "an opcode pops past a MARK (stack underflow)");
  uint32_t c = r->stack[from - 1];
  if (r->nodes[c].kind != (dict ? K_DICT : K_LIST))
    return malformed(dict ? "SETITEM(S) on something that is not a dict"
                          : "APPEND(S) on something that is not a list");
  return fill(r, c, from, dict);
}

/* ---- pass 1: memo --------------------------------------------------------------------- */

static int memo_put(rd *r, uint64_t idx) {
  if (r->sp <= fence(r))
    return malformed(r->sp ? "memoizing past a MARK (stack underflow)"
                           : "memoizing an empty stack");
  if (idx > r->nmemo) /* CPython's pickler numbers them in order; no sparse memo */
    return malformed("memo index out of order");
  int rc = grow((void **)&r->memo, &r->memocap, r->nmemo + 1, sizeof(uint32_t));
  if (rc < 0)
    return rc;
  r->memo[idx] = r->stack[r->sp - 1];
  if (idx == r->nmemo)
    r->nmemo++;
  return 0;
}

static int memo_get(rd *r, uint64_t idx) {
  if (idx >= r->nmemo)
    return malformed("reference to a memo entry that does not exist");
  uint32_t id = r->memo[idx];
  if (r->nodes[id].kind == K_TOKEN && !r->nodes[id].built)
    return malformed("a reference to a Token before its BUILD");
  return push(r, id);
}

static int op_memo(rd *r, unsigned char op) {
  const unsigned char *at = NULL;
  int n = (op == 'q' || op == 'h') ? 1 : (op == 'r' || op == 'j') ? 4 : 0;
  int rc = n ? take(r, (size_t)n, &at) : 0;
  if (rc < 0)
    return rc;
  uint64_t idx = n ? le(at, n) : r->nmemo;
  return (op == 'h' || op == 'j') ? memo_get(r, idx) : memo_put(r, idx);
}

/* ---- pass 1: globals, REDUCE, NEWOBJ, BUILD ------------------------------------------- */

/* Protocols 0-2 write Python 2's module names (pickle's fix_imports). */
static const char *py3_module(const char *m) {
  if (strcmp(m, "__builtin__") == 0 || strcmp(m, "exceptions") == 0)
    return "builtins";
  return strcmp(m, "Queue") == 0 ? "queue" : m;
}

/* Types Python has that the subset refuses by name rather than as unknown globals. */
static const char *refused_builtin(const char *module, const char *name) {
  static const char *const names[] = {"set", "frozenset", "bytearray", "complex"};
  if (strcmp(module, "builtins") != 0)
    return NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(name, names[i]) == 0)
      return names[i];
  return NULL;
}

static int lookup_global(rd *r, const char *module, const char *name, int *gid) {
  module = py3_module(module);
  const char *type = refused_builtin(module, name);
  char what[140];
  if (type)
    return refuse(r, MP_PK_EXC_TYPE, "%s values are not supported (refused, not altered)", type);
  if ((*gid = mp__pickle_exc_lookup(module, name)) > 0)
    return 0;
  if (strcmp(module, "_codecs") == 0 && strcmp(name, "encode") == 0)
    *gid = G_CODECS_ENCODE;
  else if (strcmp(module, "builtins") == 0 && strcmp(name, "bytes") == 0)
    *gid = G_BYTES;
  else if (strcmp(module, "multiprocessing.managers") == 0 && strcmp(name, "Token") == 0)
    *gid = G_TOKEN;
  else {
    snprintf(what, sizeof what, "%s.%s", module, name);
    return refuse(r, MP_PK_EXC_TYPE, "refusing global %s (not in the allowlist)", what);
  }
  return 0;
}

static int push_global(rd *r, const unsigned char *module, size_t mlen, const unsigned char *name,
                       size_t nlen) {
  char m[64], n[64];
  if (mlen >= sizeof m || nlen >= sizeof n || memchr(module, 0, mlen) || memchr(name, 0, nlen))
    return refuse(r, MP_PK_EXC_TYPE, "refusing a global with an %s name", "over-long or odd");
  memcpy(m, module, mlen);
  m[mlen] = 0;
  memcpy(n, name, nlen);
  n[nlen] = 0;
  int gid = 0;
  uint32_t id = 0;
  int rc = lookup_global(r, m, n, &gid);
  if (rc == 0)
    rc = push_new(r, K_GLOBAL, &id);
  if (rc == 0)
    r->nodes[id].u.g.gid = gid;
  return rc;
}

/* GLOBAL: "module\nname\n". */
static int op_global(rd *r) {
  const unsigned char *m = r->p, *nl1 = memchr(m, '\n', (size_t)(r->end - m));
  const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(r->end - nl1 - 1)) : NULL;
  if (nl2 == NULL)
    return malformed("truncated GLOBAL");
  r->p = nl2 + 1;
  return push_global(r, m, (size_t)(nl1 - m), nl1 + 1, (size_t)(nl2 - nl1 - 1));
}

static const unsigned char *blob_ptr(const rd *r, const node *n) {
  return (n->owned ? r->owned : r->base) + n->u.blob.off;
}

static int op_stack_global(rd *r) {
  int rc = need_items(r, 2);
  if (rc < 0)
    return rc;
  node *m = top(r, 1), *n = top(r, 0);
  if (m->kind != K_STR || n->kind != K_STR)
    return malformed("STACK_GLOBAL needs two strings");
  r->sp -= 2;
  return push_global(r, blob_ptr(r, m), m->u.blob.len, blob_ptr(r, n), n->u.blob.len);
}

/* The i-th item of a tuple node (i < n). */
static uint32_t item_at(const rd *r, const node *t, uint32_t i) {
  uint32_t l = t->u.c.head;
  while (i--)
    l = r->links[l].next;
  return r->links[l].node;
}

/* bytes from protocol 2: _codecs.encode(text, 'latin1'), each code point one byte. */
static int latin1_bytes(rd *r, const node *args) {
  const node *text = args->n == 2 ? &r->nodes[item_at(r, args, 0)] : NULL;
  const node *enc = args->n == 2 ? &r->nodes[item_at(r, args, 1)] : NULL;
  if (text == NULL || text->kind != K_STR || enc->kind != K_STR || enc->u.blob.len != 6 ||
      memcmp(blob_ptr(r, enc), "latin1", 6) != 0)
    return malformed("unexpected _codecs.encode arguments");
  size_t n = text->u.blob.len;
  if (n > r->bytes_left || r->nowned + n >= UINT32_MAX) /* a memo reference may feed the
                                                         same text to many calls */
    return refuse(r, MP_PK_EXC_VALUE, "str and bytes expand past the %s", "size limit");
  r->bytes_left -= n;
  int rc = grow((void **)&r->owned, &r->ocap, r->nowned + n + 1, 1);
  if (rc < 0)
    return rc;
  const unsigned char *s = blob_ptr(r, text); /* after grow: owned may have moved */
  unsigned char *out = r->owned + r->nowned;
  size_t k = 0;
  for (size_t i = 0; i < n; k++) {
    if (s[i] < 0x80) {
      out[k] = s[i++];
    } else if ((s[i] == 0xc2 || s[i] == 0xc3) && i + 1 < n && (s[i + 1] & 0xc0) == 0x80) {
      out[k] = (unsigned char)(((s[i] & 0x1f) << 6) | (s[i + 1] & 0x3f));
      i += 2;
    } else {
      return malformed("_codecs.encode text outside latin-1");
    }
  }
  uint32_t id = 0;
  if ((rc = push_new(r, K_BYTES, &id)) < 0)
    return rc;
  node *b = &r->nodes[id];
  b->owned = 1;
  b->u.blob.off = (uint32_t)r->nowned;
  b->u.blob.len = (uint32_t)k;
  r->nowned += k;
  return 0;
}

/* REDUCE on an allowlisted global: an exception instance, or bytes. */
static int op_reduce(rd *r) {
  int rc = need_items(r, 2);
  if (rc < 0)
    return rc;
  node *g = top(r, 1), *a = top(r, 0);
  if (g->kind != K_GLOBAL || g->u.g.gid == G_TOKEN || a->kind != K_TUPLE)
    return malformed("REDUCE needs an allowed class and an argument tuple");
  int gid = g->u.g.gid;
  node args = *a; /* the arena may move as nodes are added */
  r->sp -= 2;
  uint32_t id = 0;
  if (gid == G_BYTES) {
    if (args.n != 0)
      return malformed("bytes() with arguments");
    return push_new(r, K_BYTES, &id);
  }
  if (gid == G_CODECS_ENCODE)
    return latin1_bytes(r, &args);
  uint32_t first = args.n >= 1 ? item_at(r, &args, 0) : NO_ID;
  if ((rc = push_new(r, K_EXC, &id)) < 0)
    return rc;
  r->nodes[id].u.g.gid = gid;
  r->nodes[id].u.g.msg = first != NO_ID && r->nodes[first].kind == K_STR ? first : NO_ID;
  return 0;
}

/* NEWOBJ: cls.__new__(cls), for Token only and with no arguments (copyreg's reduction of
 * a class with __getstate__); BUILD then gives it its state. */
static int op_newobj(rd *r) {
  int rc = need_items(r, 2);
  if (rc < 0)
    return rc;
  node *g = top(r, 1), *a = top(r, 0);
  if (g->kind != K_GLOBAL || g->u.g.gid != G_TOKEN || a->kind != K_TUPLE || a->n != 0)
    return malformed("NEWOBJ is only allowed for multiprocessing.managers.Token()");
  r->sp -= 2;
  uint32_t id = 0;
  return push_new(r, K_TOKEN, &id);
}

/* BUILD on a new Token: its state (typeid, address, id), typeid and id strings. */
static int op_build(rd *r) {
  int rc = need_items(r, 2);
  if (rc < 0)
    return rc;
  node *t = top(r, 1), *st = top(r, 0);
  if (t->kind != K_TOKEN || t->built)
    return malformed("BUILD is only allowed on a new multiprocessing.managers.Token");
  if (st->kind != K_TUPLE || st->n != 3 || r->nodes[item_at(r, st, 0)].kind != K_STR ||
      r->nodes[item_at(r, st, 2)].kind != K_STR)
    return malformed("a Token's state is not (typeid, address, id)");
  t->built = 1;
  t->u.c.head = r->stack[--r->sp];
  return 0;
}

/* ---- pass 1: the opcodes ----------------------------------------------------------- */

/* Opcodes of types the subset does not have: refused by name. */
static int op_refused(rd *r, unsigned char op) {
  switch (op) {
  case 0x8f: /* EMPTY_SET */
  case 0x90:
    return refuse(r, MP_PK_EXC_TYPE, "%s values are not supported (refused, not altered)", "set");
  case 0x91:
    return refuse(r, MP_PK_EXC_TYPE, "%s values are not supported (refused, not altered)",
                  "frozenset");
  case 0x96:
    return refuse(r, MP_PK_EXC_TYPE, "%s values are not supported (refused, not altered)",
                  "bytearray");
  case 0x97:
  case 0x98: return refuse(r, MP_PK_EXC_TYPE, "%s are not supported", "out-of-band buffers");
  case 0x92:
  case 'i':
  case 'o': return refuse(r, MP_PK_EXC_TYPE, "%s are not supported", "class instances");
  case 'P':
  case 'Q': return refuse(r, MP_PK_EXC_TYPE, "%s are not supported", "persistent ids");
  default: return mp_set_error(MP_EPROTO, "pickle: opcode 0x%02x is not supported", op);
  }
}

static int step(rd *r, unsigned char op) {
  switch (op) {
  case 0x80:
  case 0x95: return op_proto_or_frame(r, op);
  case 'N': return push(r, K_NONE);
  case 0x88: return push(r, K_TRUE);
  case 0x89: return push(r, K_FALSE);
  case 'J': return op_int(r, 4, 1);
  case 'K': return op_int(r, 1, 0);
  case 'M': return op_int(r, 2, 0);
  case 0x8a: return op_long(r, 1);
  case 0x8b: return op_long(r, 4);
  case 'G': return op_float(r);
  case 0x8c: return op_blob(r, K_STR, 1);
  case 'X': return op_blob(r, K_STR, 4);
  case 0x8d: return op_blob(r, K_STR, 8);
  case 'C': return op_blob(r, K_BYTES, 1);
  case 'B': return op_blob(r, K_BYTES, 4);
  case 0x8e: return op_blob(r, K_BYTES, 8);
  case '(':
    if (grow((void **)&r->marks, &r->mcap, r->nmarks + 1, sizeof(size_t)) < 0)
      return MP_ENOMEM;
    r->marks[r->nmarks++] = r->sp;
    return 0;
  case ')': return make_container(r, K_TUPLE, r->sp);
  case 0x85:
  case 0x86:
  case 0x87: return op_tuple_n(r, (size_t)(op - 0x84));
  case 't': return op_with_mark(r, K_TUPLE);
  case ']': return make_container(r, K_LIST, r->sp);
  case 'l': return op_with_mark(r, K_LIST);
  case '}': return make_container(r, K_DICT, r->sp);
  case 'd': return op_with_mark(r, K_DICT);
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
  default: return op_refused(r, op);
  }
}

/* ---- pass 2: dict keys ---------------------------------------------------------------- */

/* Classes of keys in the total order used to find equal keys; equal keys (in Python's
 * sense: 1 == 1.0 == True, 0.0 == -0.0) always have the same class. A NaN equals only
 * itself (the same node), as in a Python dict. */
enum { KC_NONE, KC_NUM, KC_NAN, KC_STR, KC_BYTES, KC_TUPLE };

static int key_class(const node *n) {
  switch (n->kind) {
  case K_NONE: return KC_NONE;
  case K_FLOAT: return isnan(n->u.d) ? KC_NAN : KC_NUM;
  case K_STR: return KC_STR;
  case K_BYTES: return KC_BYTES;
  case K_TUPLE: return KC_TUPLE;
  default: return KC_NUM; /* K_TRUE, K_FALSE, K_INT */
  }
}

static int64_t int_of(const node *n) {
  return n->kind == K_TRUE ? 1 : n->kind == K_FALSE ? 0 : n->u.i;
}

/* Compares an integer with a non-NaN double exactly, as Python does. */
static int cmp_int_double(int64_t i, double d) {
  if (d >= 9223372036854775808.0)
    return -1;
  if (d < -9223372036854775808.0)
    return 1;
  int64_t ti = (int64_t)d; /* truncates; exact, as |d| < 2^63 */
  double t = (double)ti;    /* exact too: a truncated double is a double */
  if (i != ti)
    return i < ti ? -1 : 1;
  return d > t ? -1 : d < t ? 1 : 0;
}

static int cmp_num(const node *a, const node *b) {
  if (a->kind == K_FLOAT && b->kind == K_FLOAT)
    return a->u.d < b->u.d ? -1 : a->u.d > b->u.d ? 1 : 0;
  if (a->kind == K_FLOAT)
    return -cmp_int_double(int_of(b), a->u.d);
  if (b->kind == K_FLOAT)
    return cmp_int_double(int_of(a), b->u.d);
  int64_t x = int_of(a), y = int_of(b);
  return x < y ? -1 : x > y;
}

static int cmp_blob(const rd *r, const node *a, const node *b) {
  uint32_t n = a->u.blob.len < b->u.blob.len ? a->u.blob.len : b->u.blob.len;
  int c = n ? memcmp(blob_ptr(r, a), blob_ptr(r, b), n) : 0;
  if (c)
    return c;
  return a->u.blob.len < b->u.blob.len ? -1 : a->u.blob.len > b->u.blob.len;
}

/* Orders two hashable keys (0: Python would call them equal). Every node visited costs one
 * unit of cmp_left; when it runs out, *failed is set and the result is meaningless. */
static int key_cmp(rd *r, uint32_t x, uint32_t y, int *failed) {
  if (x == y || *failed)
    return 0; /* the same object, as Python's identity shortcut */
  if (r->cmp_left == 0) {
    *failed = 1;
    return 0;
  }
  r->cmp_left--;
  r->io->work++;
  const node *a = &r->nodes[x], *b = &r->nodes[y];
  int ca = key_class(a), cb = key_class(b);
  if (ca != cb)
    return ca < cb ? -1 : 1;
  switch (ca) {
  case KC_NONE: return 0;
  case KC_NUM: return cmp_num(a, b);
  case KC_NAN: return x < y ? -1 : 1;
  case KC_STR:
  case KC_BYTES: return cmp_blob(r, a, b);
  default: break;
  }
  uint32_t la = a->u.c.head, lb = b->u.c.head;
  for (; la != NO_ID && lb != NO_ID; la = r->links[la].next, lb = r->links[lb].next) {
    int c = key_cmp(r, r->links[la].node, r->links[lb].node, failed);
    if (c)
      return c;
  }
  return a->n < b->n ? -1 : a->n > b->n;
}

/* Checks that a dict key is hashable in Python and within the depth limit. */
static int check_key(rd *r, uint32_t id, int level) {
  const node *n = &r->nodes[id];
  static const char *const what[] = {[K_LIST] = "list",
                                     [K_DICT] = "dict",
                                     [K_GLOBAL] = "class",
                                     [K_EXC] = "exception",
                                     [K_TOKEN] = "Token"};
  if (n->kind == K_LIST || n->kind == K_DICT || n->kind >= K_GLOBAL)
    return refuse(r, MP_PK_EXC_TYPE, "a dict key of type '%s' (unhashable or not supported)",
                  what[n->kind]);
  if (n->kind != K_TUPLE)
    return 0;
  if (level > MP_VALUE_MAX_DEPTH)
    return refuse(r, MP_PK_EXC_VALUE, "containers nested deeper than %s", "32");
  for (uint32_t l = n->u.c.head; l != NO_ID; l = r->links[l].next) {
    int rc = check_key(r, r->links[l].node, level + 1);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* Sorts idx[0..n) by key (merge sort, O(n log n) comparisons), using tmp. */
static void sort_keys(rd *r, uint32_t *idx, uint32_t *tmp, size_t n, int *failed) {
  for (size_t w = 1; w < n && !*failed; w *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        tmp[k++] = key_cmp(r, idx[j], idx[i], failed) < 0 ? idx[j++] : idx[i++];
      while (i < mid)
        tmp[k++] = idx[i++];
      while (j < hi)
        tmp[k++] = idx[j++];
    }
    memcpy(idx, tmp, n * sizeof *idx);
  }
}

/* Refuses a dict whose keys are not hashable, or two of which Python calls equal (a
 * Python dict cannot hold both, so keeping them would alter the value). */
static int check_keys(rd *r, const node *d, int level) {
  size_t n = d->n, k = 0;
  uint32_t *idx = malloc((2 * n + 1) * sizeof *idx);
  if (idx == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory reading a pickle");
  int rc = 0, failed = 0;
  for (uint32_t l = d->u.c.head; l != NO_ID && rc == 0; l = r->links[r->links[l].next].next) {
    idx[k++] = r->links[l].node;
    rc = check_key(r, r->links[l].node, level + 1);
  }
  if (rc == 0 && n > 1) {
    sort_keys(r, idx, idx + n, n, &failed);
    for (size_t i = 1; i < n && !failed && rc == 0; i++)
      if (key_cmp(r, idx[i - 1], idx[i], &failed) == 0 && !failed)
        rc = refuse(r, MP_PK_EXC_VALUE, "a dict with two keys Python considers equal (%s)",
                    "a Python dict cannot hold both");
    if (failed && rc == 0)
      rc = refuse(r, MP_PK_EXC_VALUE, "dict keys %s the size limit", "cost more to compare than");
  }
  free(idx);
  return rc;
}

/* ---- pass 2: the graph becomes a tree ----------------------------------------------- */

static int convert(rd *r, uint32_t id, int level, mp_value **out);

static int convert_blob(rd *r, const node *n, mp_value **out) {
  if (n->u.blob.len > r->bytes_left)
    return refuse(r, MP_PK_EXC_VALUE, "str and bytes expand past the %s", "size limit");
  r->bytes_left -= n->u.blob.len;
  const char *p = (const char *)blob_ptr(r, n);
  *out = n->kind == K_STR ? mp_value_strn(p, n->u.blob.len) : mp_value_bytes(p, n->u.blob.len);
  if (*out || mp_last_error_code() == MP_ENOMEM)
    return *out ? 0 : MP_ENOMEM;
  return refuse(r, MP_PK_EXC_VALUE, "bad text: %s", "not valid UTF-8 (or a lone surrogate)");
}

/* The first exception instance goes to io->exc; it reads as None. */
static int convert_exc(rd *r, const node *n, mp_value **out) {
  mp__pk_exc *exc = r->io->exc;
  if (exc && exc->kind == MP_PK_EXC_NONE) {
    exc->kind = n->u.g.gid;
    exc->msg[0] = '\0';
    if (n->u.g.msg != NO_ID) {
      const node *m = &r->nodes[n->u.g.msg];
      snprintf(exc->msg, sizeof exc->msg, "%.*s", (int)m->u.blob.len, (const char *)blob_ptr(r, m));
    }
  }
  *out = mp_value_nil();
  return *out ? 0 : MP_ENOMEM;
}

static int convert_items(rd *r, const node *n, int level, mp_value *c) {
  int rc = 0;
  for (uint32_t l = n->u.c.head; l != NO_ID && rc == 0; l = r->links[l].next) {
    mp_value *k = NULL, *v = NULL;
    rc = convert(r, r->links[l].node, level, &k);
    if (rc == 0 && n->kind == K_DICT) {
      l = r->links[l].next;
      if ((rc = convert(r, r->links[l].node, level, &v)) == 0)
        rc = mp__value_dict_push(c, k, v);
      else
        mp_value_free(k);
    } else if (rc == 0) {
      rc = mp_value_append(c, k);
    }
  }
  return rc;
}

/* A list, tuple, dict or built Token (its state tuple) at nesting level `level`. */
static int convert_container(rd *r, uint32_t id, int level, mp_value **out) {
  node *n = &r->nodes[id];
  if (level > MP_VALUE_MAX_DEPTH)
    return refuse(r, MP_PK_EXC_VALUE, "containers nested deeper than %s", "32");
  if (n->on_path)
    return refuse(r, MP_PK_EXC_VALUE,
                  "a %s that contains itself is not supported (refused, "
                  "not altered)",
                  n->kind == K_DICT ? "dict" : "list");
  if (n->kind == K_TOKEN) { /* the token reads as its state */
    n->on_path = 1;
    int rc = convert(r, n->u.c.head, level - 1, out);
    r->nodes[id].on_path = 0;
    return rc;
  }
  int rc = n->kind == K_DICT && n->n > 0 ? check_keys(r, n, level) : 0;
  if (rc < 0)
    return rc;
  mp_value *c = n->kind == K_LIST    ? mp_value_list()
                : n->kind == K_TUPLE ? mp_value_tuple()
                                     : mp_value_dict();
  if (c == NULL)
    return MP_ENOMEM;
  n->on_path = 1;
  rc = convert_items(r, n, level, c);
  r->nodes[id].on_path = 0;
  if (rc < 0) {
    mp_value_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

static int convert(rd *r, uint32_t id, int level, mp_value **out) {
  int rc = cancelled(r);
  if (rc < 0)
    return rc;
  if (r->values_left == 0)
    return refuse(r, MP_PK_EXC_VALUE,
                  "the value expands past the %s (memo references "
                  "count each time)",
                  "size limit");
  r->values_left--;
  const node *n = &r->nodes[id];
  switch (n->kind) {
  case K_NONE: *out = mp_value_nil(); break;
  case K_TRUE:
  case K_FALSE: *out = mp_value_bool(n->kind == K_TRUE); break;
  case K_INT: *out = mp_value_int(n->u.i); break;
  case K_FLOAT: *out = mp_value_double(n->u.d); break;
  case K_STR:
  case K_BYTES: return convert_blob(r, n, out);
  case K_EXC: return convert_exc(r, n, out);
  case K_GLOBAL: return refuse(r, MP_PK_EXC_TYPE, "a class cannot be a value %s", "here");
  case K_TOKEN:
    if (!n->built)
      return malformed("a Token without its state (NEWOBJ with no BUILD)");
    return convert_container(r, id, level + 1, out);
  default: return convert_container(r, id, level + 1, out);
  }
  return *out ? 0 : MP_ENOMEM;
}

/* ---- the reader --------------------------------------------------------------------- */

static int load(rd *r, mp_value **out) {
  while (r->p < r->end) {
    unsigned char op = *r->p++;
    int rc = cancelled(r);
    if (rc < 0)
      return rc;
    if (op != '.') {
      if ((rc = step(r, op)) < 0)
        return rc;
      continue;
    }
    if (r->sp != 1 || r->nmarks != 0)
      return malformed("STOP with a stack that does not hold exactly one value");
    if (r->p != r->end)
      return malformed("bytes after STOP");
    return convert(r, r->stack[0], 0, out);
  }
  return malformed("truncated data (no STOP)");
}

/* The arena starts with None, True and False at K_NONE, K_TRUE and K_FALSE. */
static int arena_init(rd *r) {
  for (int k = K_NONE; k <= K_FALSE; k++) {
    uint32_t id = 0;
    int rc = new_node(r, k, &id);
    if (rc < 0)
      return rc;
  }
  return 0;
}

int mp__pickle_read(const void *buf, size_t len, mp__pk_read *io, mp_value **out) {
  mp__pk_read defaults = {0};
  if (io == NULL)
    io = &defaults;
  io->refusal = MP_PK_EXC_NONE;
  io->work = 0;
  if (io->exc)
    memset(io->exc, 0, sizeof *io->exc);
  if (buf == NULL || out == NULL)
    return mp_set_error(MP_EINVAL, "mp__pickle_read: buf or out is NULL");
  *out = NULL;
  rd r;
  memset(&r, 0, sizeof r);
  r.io = io;
  if (len > UINT32_MAX - 1)
    return refuse(&r, MP_PK_EXC_VALUE, "a pickle larger than %s is not supported", "4 GiB");
  /* Each value costs at least one byte of input unless a memo reference repeats it: the
   * budget is the input's size plus a fixed allowance for repeats, within max_values. */
  size_t max = io->max_values ? io->max_values : MP_PICKLE_MAX_VALUES;
  if (max > len + MP_PICKLE_REPEAT_VALUES)
    max = len + MP_PICKLE_REPEAT_VALUES;
  r.base = r.p = buf;
  r.end = r.p + len;
  r.max_nodes = 2 * max + 16;
  r.values_left = max;
  r.cmp_left = 16 * max + (1u << 20);
  r.bytes_left = (uint64_t)len * 4 + (1u << 20);
  int rc = arena_init(&r);
  if (rc == 0)
    rc = load(&r, out);
  free(r.nodes);
  free(r.links);
  free(r.stack);
  free(r.marks);
  free(r.memo);
  free(r.owned);
  return rc;
}

int mp__pickle_loads(const void *buf, size_t len, mp_value **out, mp__pk_exc *exc) {
  mp__pk_read io = {0};
  io.exc = exc;
  return mp__pickle_read(buf, len, &io, out);
}
