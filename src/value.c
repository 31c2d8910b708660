/* Typed values and their MessagePack encoding (msgpack-c's packer). A tuple travels as
 * extension type MP_VALUE_EXT_TUPLE whose payload is a MessagePack array, so list and tuple
 * stay distinct. Decoding scans the input first (scan) and only then builds values: the
 * scan refuses a nesting deeper than MP_VALUE_MAX_DEPTH and any count or length larger than
 * the bytes left, which bounds every allocation by the input's size. */
#include <msgpack.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "value.h"

#define MP_VALUE_EXT_TUPLE MP__VALUE_EXT_TUPLE

struct mp_value {
  mp_value_type type;
  union {
    int b;
    int64_t i;
    double d;
    struct {
      char *ptr; /* NUL-terminated for both str and bytes */
      size_t len;
    } s;
    struct {
      mp_value **items; /* dict: key0, val0, key1, val1, ... */
      size_t len;       /* items in use (dict: 2 per pair) */
      size_t cap;
    } seq;
  } u;
  struct mp__vblock *block; /* the allocation it shares with a batch (arena), or NULL */
};

/* One allocation for the values of a decoded batch (see value.h). refs counts every slot
 * from the start plus the arena's own reference; mp__value_arena_done gives back the unused
 * slots and the arena's, and each value freed gives back its one: the last one out frees. */
struct mp__vblock {
  atomic_size_t refs;
  size_t cap, used;
  mp_value v[];
};

static void block_release(struct mp__vblock *b, size_t n) {
  if (atomic_fetch_sub_explicit(&b->refs, n, memory_order_acq_rel) == n)
    free(b);
}

/* ---- construction -------------------------------------------------------------------- */

static mp_value *new_value(mp_value_type type) {
  /* malloc, not calloc: glibc before 2.41 serves calloc without its thread cache, and values
   * are small and many (a pool map allocates one per input and output). */
  mp_value *v = malloc(sizeof *v);
  if (v == NULL) {
    mp_set_error(MP_ENOMEM, "out of memory allocating a value");
    return NULL;
  }
  memset(v, 0, sizeof *v);
  v->type = type;
  return v;
}

/* Values per block: small enough (40 KiB) to come from the heap's reused memory rather than
 * a fresh mapping, whose first touch costs a page fault per 4 KiB. */
#define BLOCK_VALUES 1024

/* Closes the arena's current block: the slots it will not hand out, the arena's own
 * reference and the values its owner already gave back are returned at once. */
static void close_block(mp__value_arena *a) {
  if (a->b)
    block_release(a->b, a->b->cap - a->b->used + 1 + a->returned);
  a->b = NULL;
  a->returned = 0;
}

/* A value from the arena's current block, a new block while the arena expects more values,
 * or else from the heap. */
static mp_value *arena_value(mp__value_arena *a, mp_value_type type) {
  if (a && (a->b == NULL || a->b->used == a->b->cap) && a->expected > 0) {
    close_block(a);
    size_t cap = a->expected < BLOCK_VALUES ? a->expected : BLOCK_VALUES;
    a->b = malloc(sizeof *a->b + cap * sizeof(mp_value));
    a->expected -= cap;
    if (a->b) {
      atomic_init(&a->b->refs, cap + 1);
      a->b->cap = cap;
      a->b->used = 0;
    }
  }
  if (a == NULL || a->b == NULL || a->b->used == a->b->cap)
    return new_value(type);
  mp_value *v = &a->b->v[a->b->used++];
  memset(v, 0, sizeof *v);
  v->type = type;
  v->block = a->b;
  return v;
}

void mp__value_arena_init(mp__value_arena *a, size_t expected) {
  a->b = NULL;
  a->expected = expected;
  a->returned = 0;
}

void mp__value_arena_done(mp__value_arena *a) {
  close_block(a);
  a->expected = 0;
}

/* Frees a value's own storage (not its contents). */
static void release_value(mp_value *v) {
  if (v->block)
    block_release(v->block, 1);
  else
    free(v);
}

mp_value *mp_value_nil(void) { return new_value(MP_VALUE_NIL); }

mp_value *mp_value_bool(int b) {
  mp_value *v = new_value(MP_VALUE_BOOL);
  if (v)
    v->u.b = b != 0;
  return v;
}

mp_value *mp_value_int(int64_t i) {
  mp_value *v = new_value(MP_VALUE_INT);
  if (v)
    v->u.i = i;
  return v;
}

mp_value *mp_value_double(double d) {
  mp_value *v = new_value(MP_VALUE_DOUBLE);
  if (v)
    v->u.d = d;
  return v;
}

/* Returns 1 if s[0..len) is well-formed UTF-8 (no overlongs, surrogates or values above
 * U+10FFFF), as Python's decoder requires. */
static int utf8_valid(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i];
    size_t n;
    unsigned min, cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, min = 0x10000, cp = c & 0x07;
    } else {
      return 0;
    }
    if (len - i <= n)
      return 0;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += n + 1;
  }
  return 1;
}

/* A str or bytes value holding a copy of data, its storage from the arena (may be NULL). */
static mp_value *arena_blob(mp__value_arena *a, mp_value_type type, const void *data, size_t len) {
  mp_value *v = arena_value(a, type);
  if (v == NULL)
    return NULL;
  v->u.s.ptr = malloc(len + 1);
  if (v->u.s.ptr == NULL) {
    release_value(v);
    mp_set_error(MP_ENOMEM, "out of memory copying %llu bytes into a value",
                 (unsigned long long)len);
    return NULL;
  }
  if (len > 0)
    memcpy(v->u.s.ptr, data, len);
  v->u.s.ptr[len] = '\0';
  v->u.s.len = len;
  return v;
}

static mp_value *new_blob(mp_value_type type, const void *data, size_t len) {
  return arena_blob(NULL, type, data, len);
}

mp_value *mp_value_strn(const char *s, size_t len) {
  if (s == NULL && len > 0) {
    mp_set_error(MP_EINVAL, "mp_value_strn: s is NULL");
    return NULL;
  }
  if (len > 0 && !utf8_valid((const unsigned char *)s, len)) {
    mp_set_error(MP_EINVAL, "mp_value_str: the text is not valid UTF-8");
    return NULL;
  }
  return new_blob(MP_VALUE_STR, s, len);
}

mp_value *mp_value_str(const char *s) {
  if (s == NULL) {
    mp_set_error(MP_EINVAL, "mp_value_str: s is NULL");
    return NULL;
  }
  return mp_value_strn(s, strlen(s));
}

mp_value *mp_value_bytes(const void *data, size_t len) {
  if (data == NULL && len > 0) {
    mp_set_error(MP_EINVAL, "mp_value_bytes: data is NULL");
    return NULL;
  }
  return new_blob(MP_VALUE_BYTES, data, len);
}

mp_value *mp_value_list(void) { return new_value(MP_VALUE_LIST); }
mp_value *mp_value_tuple(void) { return new_value(MP_VALUE_TUPLE); }
mp_value *mp_value_dict(void) { return new_value(MP_VALUE_DICT); }

/* Frees what a value contains (not the value's own storage). */
static void free_contents(mp_value *v) {
  if (v->type == MP_VALUE_STR || v->type == MP_VALUE_BYTES)
    free(v->u.s.ptr);
  if (v->type >= MP_VALUE_LIST) {
    for (size_t i = 0; i < v->u.seq.len; i++)
      mp_value_free(v->u.seq.items[i]);
    free(v->u.seq.items);
  }
}

void mp_value_free(mp_value *v) {
  if (v == NULL)
    return;
  free_contents(v);
  release_value(v);
}

void mp__value_free_in(mp__value_arena *a, mp_value *v) {
  if (v == NULL)
    return;
  free_contents(v);
  if (v->block != NULL && v->block == a->b)
    a->returned++; /* given back with the block, in one atomic step */
  else
    release_value(v);
}

/* Makes room for `more` items; growth is geometric so appending is amortised O(1). */
static int reserve(mp_value *c, size_t more) {
  if (c->u.seq.cap - c->u.seq.len >= more)
    return 0;
  size_t cap = c->u.seq.cap ? c->u.seq.cap * 2 : 8;
  while (cap - c->u.seq.len < more)
    cap *= 2;
  mp_value **items = realloc(c->u.seq.items, cap * sizeof *items);
  if (items == NULL)
    return mp_set_error(MP_ENOMEM, "out of memory growing a container to %llu items",
                        (unsigned long long)cap);
  c->u.seq.items = items;
  c->u.seq.cap = cap;
  return 0;
}

/* The error for a NULL item: its failed constructor's code, else MP_EINVAL. */
static int null_item_error(const char *fn) {
  int code = mp_last_error_code();
  if (code != MP_ENOMEM && code != MP_EINVAL)
    code = MP_EINVAL;
  char cause[256]; /* mp_set_error overwrites the message it would be formatting */
  snprintf(cause, sizeof cause, "%s", mp_last_error());
  return mp_set_error(code, "%s: item is NULL (%s)", fn, cause);
}

int mp_value_append(mp_value *seq, mp_value *item) {
  int rc = 0;
  if (item == NULL)
    rc = null_item_error("mp_value_append");
  else if (seq == NULL || (seq->type != MP_VALUE_LIST && seq->type != MP_VALUE_TUPLE))
    rc = mp_set_error(MP_EINVAL, "mp_value_append: not a list or tuple");
  else if (item == seq)
    rc = mp_set_error(MP_EINVAL, "mp_value_append: a value cannot contain itself");
  else
    rc = reserve(seq, 1);
  if (rc < 0) {
    if (item != seq)
      mp_value_free(item);
    return rc;
  }
  seq->u.seq.items[seq->u.seq.len++] = item;
  return 0;
}

/* Appends a pair without looking for an equal key (decode keeps pairs as sent). */
static int dict_push(mp_value *dict, mp_value *key, mp_value *val) {
  int rc = reserve(dict, 2);
  if (rc < 0)
    return rc;
  dict->u.seq.items[dict->u.seq.len++] = key;
  dict->u.seq.items[dict->u.seq.len++] = val;
  return 0;
}

int mp__value_dict_push(mp_value *dict, mp_value *key, mp_value *val) {
  int rc = key == NULL || val == NULL ? null_item_error("mp__value_dict_push")
           : dict == NULL || dict->type != MP_VALUE_DICT
               ? mp_set_error(MP_EINVAL, "mp__value_dict_push: not a dict")
               : dict_push(dict, key, val);
  if (rc < 0) {
    mp_value_free(key);
    mp_value_free(val);
  }
  return rc;
}

int mp__value_take(mp_value *seq, size_t i, mp_value **item) {
  mp_value *nil = mp_value_nil();
  int rc = nil ? mp_value_at(seq, i, item) : MP_ENOMEM;
  if (rc < 0) {
    mp_value_free(nil);
    return rc;
  }
  seq->u.seq.items[i] = nil;
  return 0;
}

int mp_value_dict_set(mp_value *dict, mp_value *key, mp_value *val) {
  int rc = 0;
  if (key == NULL || val == NULL)
    rc = null_item_error("mp_value_dict_set");
  else if (dict == NULL || dict->type != MP_VALUE_DICT)
    rc = mp_set_error(MP_EINVAL, "mp_value_dict_set: not a dict");
  else if (key == dict || val == dict || key == val)
    rc = mp_set_error(MP_EINVAL, "mp_value_dict_set: a value cannot contain itself");
  if (rc == 0) {
    for (size_t i = 0; i < dict->u.seq.len; i += 2) {
      if (mp_value_equal(dict->u.seq.items[i], key)) {
        mp_value_free(dict->u.seq.items[i + 1]);
        dict->u.seq.items[i + 1] = val;
        mp_value_free(key);
        return 0;
      }
    }
    rc = dict_push(dict, key, val);
  }
  if (rc < 0) {
    if (key != dict)
      mp_value_free(key);
    if (val != dict && val != key)
      mp_value_free(val);
  }
  return rc;
}

static mp_value *copy_items(const mp_value *v, mp_value *c) {
  if (c == NULL || reserve(c, v->u.seq.len) < 0) {
    mp_value_free(c);
    return NULL;
  }
  for (size_t i = 0; i < v->u.seq.len; i++) {
    mp_value *item = mp_value_copy(v->u.seq.items[i]);
    if (item == NULL) {
      mp_value_free(c);
      return NULL;
    }
    c->u.seq.items[c->u.seq.len++] = item;
  }
  return c;
}

mp_value *mp_value_copy(const mp_value *v) {
  if (v == NULL) {
    mp_set_error(MP_EINVAL, "mp_value_copy: value is NULL");
    return NULL;
  }
  switch (v->type) {
  case MP_VALUE_STR:
  case MP_VALUE_BYTES: return new_blob(v->type, v->u.s.ptr, v->u.s.len);
  case MP_VALUE_LIST:
  case MP_VALUE_TUPLE:
  case MP_VALUE_DICT: return copy_items(v, new_value(v->type));
  default: {
    mp_value *c = new_value(v->type);
    if (c)
      c->u = v->u;
    return c;
  }
  }
}

/* ---- access ------------------------------------------------------------------------- */

int mp_value_type_of(const mp_value *v) {
  return v ? (int)v->type : mp_set_error(MP_EINVAL, "mp_value_type_of: value is NULL");
}

static const char *type_name(mp_value_type t) {
  static const char *const names[] = {"nil",   "bool", "int",   "double", "str",
                                      "bytes", "list", "tuple", "dict"};
  return names[t];
}

static int want(const mp_value *v, mp_value_type t, const char *fn) {
  if (v == NULL)
    return mp_set_error(MP_EINVAL, "%s: value is NULL", fn);
  if (v->type != t)
    return mp_set_error(MP_EINVAL, "%s: value is a %s, not a %s", fn, type_name(v->type),
                        type_name(t));
  return 0;
}

int mp_value_get_bool(const mp_value *v, int *b) {
  int rc = b ? want(v, MP_VALUE_BOOL, "mp_value_get_bool")
             : mp_set_error(MP_EINVAL, "mp_value_get_bool: b is NULL");
  if (rc == 0)
    *b = v->u.b;
  return rc;
}

int mp_value_get_int(const mp_value *v, int64_t *i) {
  int rc = i ? want(v, MP_VALUE_INT, "mp_value_get_int")
             : mp_set_error(MP_EINVAL, "mp_value_get_int: i is NULL");
  if (rc == 0)
    *i = v->u.i;
  return rc;
}

int mp_value_get_double(const mp_value *v, double *d) {
  int rc = d ? want(v, MP_VALUE_DOUBLE, "mp_value_get_double")
             : mp_set_error(MP_EINVAL, "mp_value_get_double: d is NULL");
  if (rc == 0)
    *d = v->u.d;
  return rc;
}

int mp_value_get_str(const mp_value *v, const char **s, size_t *len) {
  int rc = s ? want(v, MP_VALUE_STR, "mp_value_get_str")
             : mp_set_error(MP_EINVAL, "mp_value_get_str: s is NULL");
  if (rc == 0) {
    *s = v->u.s.ptr;
    if (len)
      *len = v->u.s.len;
  }
  return rc;
}

int mp_value_get_bytes(const mp_value *v, const void **data, size_t *len) {
  int rc = data && len ? want(v, MP_VALUE_BYTES, "mp_value_get_bytes")
                       : mp_set_error(MP_EINVAL, "mp_value_get_bytes: data or len is NULL");
  if (rc == 0) {
    *data = v->u.s.ptr;
    *len = v->u.s.len;
  }
  return rc;
}

int mp_value_len(const mp_value *v, size_t *len) {
  if (v == NULL || len == NULL)
    return mp_set_error(MP_EINVAL, "mp_value_len: value or len is NULL");
  if (v->type == MP_VALUE_STR || v->type == MP_VALUE_BYTES)
    *len = v->u.s.len;
  else if (v->type == MP_VALUE_LIST || v->type == MP_VALUE_TUPLE)
    *len = v->u.seq.len;
  else if (v->type == MP_VALUE_DICT)
    *len = v->u.seq.len / 2;
  else
    return mp_set_error(MP_EINVAL, "mp_value_len: a %s has no length", type_name(v->type));
  return 0;
}

int mp_value_at(const mp_value *seq, size_t i, mp_value **item) {
  if (seq == NULL || item == NULL || (seq->type != MP_VALUE_LIST && seq->type != MP_VALUE_TUPLE))
    return mp_set_error(MP_EINVAL, "mp_value_at: not a list or tuple, or item is NULL");
  if (i >= seq->u.seq.len)
    return mp_set_error(MP_EINVAL, "mp_value_at: index %llu out of range (length %llu)",
                        (unsigned long long)i, (unsigned long long)seq->u.seq.len);
  *item = seq->u.seq.items[i];
  return 0;
}

int mp_value_dict_at(const mp_value *dict, size_t i, mp_value **key, mp_value **val) {
  int rc = want(dict, MP_VALUE_DICT, "mp_value_dict_at");
  if (rc < 0)
    return rc;
  if (i >= dict->u.seq.len / 2)
    return mp_set_error(MP_EINVAL, "mp_value_dict_at: index %llu out of range (length %llu)",
                        (unsigned long long)i, (unsigned long long)(dict->u.seq.len / 2));
  if (key)
    *key = dict->u.seq.items[2 * i];
  if (val)
    *val = dict->u.seq.items[2 * i + 1];
  return 0;
}

int mp_value_dict_get(const mp_value *dict, const mp_value *key, mp_value **val) {
  int rc = key && val ? want(dict, MP_VALUE_DICT, "mp_value_dict_get")
                      : mp_set_error(MP_EINVAL, "mp_value_dict_get: key or val is NULL");
  if (rc < 0)
    return rc;
  for (size_t i = 0; i < dict->u.seq.len; i += 2) {
    if (mp_value_equal(dict->u.seq.items[i], key)) {
      *val = dict->u.seq.items[i + 1];
      return 0;
    }
  }
  return mp_set_error(MP_ENOENT, "mp_value_dict_get: no such key");
}

int mp_value_equal(const mp_value *a, const mp_value *b) {
  if (a == NULL || b == NULL)
    return a == b;
  if (a->type != b->type)
    return 0;
  switch (a->type) {
  case MP_VALUE_NIL: return 1;
  case MP_VALUE_BOOL: return a->u.b == b->u.b;
  case MP_VALUE_INT: return a->u.i == b->u.i;
  case MP_VALUE_DOUBLE: return a->u.d == b->u.d;
  case MP_VALUE_STR:
  case MP_VALUE_BYTES:
    return a->u.s.len == b->u.s.len && memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0;
  default:
    if (a->u.seq.len != b->u.seq.len)
      return 0;
    for (size_t i = 0; i < a->u.seq.len; i++)
      if (!mp_value_equal(a->u.seq.items[i], b->u.seq.items[i]))
        return 0;
    return 1;
  }
}

/* ---- encoding ------------------------------------------------------------------------ */

/* msgpack-c's packers write through this into an mp__buf. */
static int buf_write(void *data, const char *p, size_t n) {
  return mp__buf_put(data, p, n) < 0 ? -1 : 0;
}

static void packer_init(msgpack_packer *pk, mp__buf *b) { msgpack_packer_init(pk, b, buf_write); }

static int pack(msgpack_packer *pk, const mp_value *v, int depth);

static int pack_items(msgpack_packer *pk, const mp_value *v, int depth) {
  for (size_t i = 0; i < v->u.seq.len; i++) {
    int rc = pack(pk, v->u.seq.items[i], depth + 1);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* A tuple is an ext value wrapping the MessagePack array of its items. */
static int pack_tuple(msgpack_packer *pk, const mp_value *v, int depth) {
  mp__buf inner = {0};
  msgpack_packer ipk;
  packer_init(&ipk, &inner);
  int rc = msgpack_pack_array(&ipk, v->u.seq.len) < 0 ? MP_ENOMEM : 0;
  if (rc == 0)
    rc = pack_items(&ipk, v, depth);
  if (rc == 0 && inner.len > UINT32_MAX)
    rc = mp_set_error(MP_EINVAL, "a tuple's encoding exceeds 4 GiB");
  if (rc == 0 && (msgpack_pack_ext(pk, inner.len, MP_VALUE_EXT_TUPLE) < 0 ||
                  msgpack_pack_ext_body(pk, inner.data, inner.len) < 0))
    rc = MP_ENOMEM;
  mp__buf_free(&inner);
  return rc;
}

static int pack_scalar(msgpack_packer *pk, const mp_value *v) {
  switch (v->type) {
  case MP_VALUE_NIL: return msgpack_pack_nil(pk);
  case MP_VALUE_BOOL: return v->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
  case MP_VALUE_INT: return msgpack_pack_int64(pk, v->u.i);
  case MP_VALUE_DOUBLE: return msgpack_pack_double(pk, v->u.d);
  case MP_VALUE_STR:
    return msgpack_pack_str(pk, v->u.s.len) < 0 ? -1
                                                : msgpack_pack_str_body(pk, v->u.s.ptr, v->u.s.len);
  default:
    return msgpack_pack_bin(pk, v->u.s.len) < 0 ? -1
                                                : msgpack_pack_bin_body(pk, v->u.s.ptr, v->u.s.len);
  }
}

static int pack(msgpack_packer *pk, const mp_value *v, int depth) {
  if (v->type < MP_VALUE_LIST) {
    if ((v->type == MP_VALUE_STR || v->type == MP_VALUE_BYTES) && v->u.s.len > UINT32_MAX)
      return mp_set_error(MP_EINVAL, "a str or bytes value exceeds MessagePack's 4 GiB limit");
    return pack_scalar(pk, v) < 0 ? mp_set_error(MP_ENOMEM, "out of memory encoding") : 0;
  }
  if (depth >= MP_VALUE_MAX_DEPTH)
    return mp_set_error(MP_EINVAL, "value nests deeper than %d containers", MP_VALUE_MAX_DEPTH);
  if (v->u.seq.len > UINT32_MAX)
    return mp_set_error(MP_EINVAL, "a container exceeds MessagePack's 2^32-1 items");
  if (v->type == MP_VALUE_TUPLE) {
    int rc = pack_tuple(pk, v, depth);
    return rc == MP_ENOMEM ? mp_set_error(MP_ENOMEM, "out of memory encoding") : rc;
  }
  int hdr = v->type == MP_VALUE_LIST ? msgpack_pack_array(pk, v->u.seq.len)
                                     : msgpack_pack_map(pk, v->u.seq.len / 2);
  if (hdr < 0)
    return mp_set_error(MP_ENOMEM, "out of memory encoding");
  return pack_items(pk, v, depth);
}

/* An integer in the shortest form, exactly as msgpack_pack_int64 writes it: most of what
 * pool items carry, written here without the packer's call per piece. */
static int put_int(mp__buf *b, int64_t i) {
  int rc = b->cap - b->len >= 9 ? 0 : mp__buf_reserve(b, 9);
  if (rc < 0)
    return rc;
  unsigned char *p = b->data + b->len;
  int n;
  if (i >= -32 && i < 128)
    p[0] = (unsigned char)(int8_t)i, n = 0;
  else if (i < 0)
    n = i >= INT8_MIN    ? 1
        : i >= INT16_MIN ? 2
        : i >= INT32_MIN ? 4
                         : 8,
    p[0] = n == 1   ? 0xd0
           : n == 2 ? 0xd1
           : n == 4 ? 0xd2
                    : 0xd3;
  else
    n = i <= UINT8_MAX    ? 1
        : i <= UINT16_MAX ? 2
        : i <= UINT32_MAX ? 4
                          : 8,
    p[0] = n == 1   ? 0xcc
           : n == 2 ? 0xcd
           : n == 4 ? 0xce
                    : 0xcf;
  for (int k = 0; k < n; k++)
    p[1 + k] = (unsigned char)((uint64_t)i >> (8 * (n - 1 - k)));
  b->len += 1 + (size_t)n;
  return 0;
}

int mp__value_encode_append(const mp_value *v, mp__buf *b) {
  static const unsigned char nil = 0xc0;
  if (v == NULL)
    return mp__buf_put(b, &nil, 1);
  if (v->type == MP_VALUE_INT)
    return put_int(b, v->u.i);
  msgpack_packer pk;
  packer_init(&pk, b);
  size_t start = b->len;
  int rc = pack(&pk, v, 0);
  if (rc < 0)
    b->len = start; /* nothing half-written stays behind */
  return rc;
}

int mp__value_put_ext_head(mp__buf *b, int type, size_t payload_len) {
  if (payload_len > UINT32_MAX)
    return mp_set_error(MP_EINVAL, "an extension value of %llu bytes exceeds 4 GiB",
                        (unsigned long long)payload_len);
  msgpack_packer pk;
  packer_init(&pk, b);
  return msgpack_pack_ext(&pk, payload_len, (int8_t)type) < 0
             ? mp_set_error(MP_ENOMEM, "out of memory encoding")
             : 0;
}

int mp__value_put_array_head(mp__buf *b, size_t n) {
  if (n > UINT32_MAX)
    return mp_set_error(MP_EINVAL, "an array of %llu items exceeds MessagePack's limit",
                        (unsigned long long)n);
  msgpack_packer pk;
  packer_init(&pk, b);
  return msgpack_pack_array(&pk, n) < 0 ? mp_set_error(MP_ENOMEM, "out of memory encoding") : 0;
}

int mp_value_encode(const mp_value *v, void **buf, size_t *len) {
  if (v == NULL || buf == NULL || len == NULL)
    return mp_set_error(MP_EINVAL, "mp_value_encode: value, buf or len is NULL");
  mp__buf b = {0};
  int rc = mp__value_encode_append(v, &b);
  if (rc < 0) {
    mp__buf_free(&b);
    return rc;
  }
  *len = b.len;
  *buf = b.data; /* malloc'd: mp_free releases it */
  return 0;
}

/* ---- decoding: the scan -------------------------------------------------------------- */

static int malformed(const char *what, size_t pos) {
  return mp_set_error(MP_EPROTO, "malformed MessagePack: %s at byte %llu", what,
                      (unsigned long long)pos);
}

static uint64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

/* One item's header at p[pos]: *skip = bytes of header plus payload, *count = items it
 * contains (containers), *ext = the extension's payload length + 1 (0 if not an ext). */
typedef struct head {
  uint64_t skip, count, ext_len;
  int is_container, is_ext;
  int ext_type;
} head;

/* Sizes of the length field for the 0xc4..0xdf formats (0: fixed-size payload). */
static int parse_head(const unsigned char *p, size_t left, head *h) {
  unsigned c = p[0];
  memset(h, 0, sizeof *h);
  h->skip = 1;
  if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
    return 0;
  if ((c & 0xf0) == 0x80 || (c & 0xf0) == 0x90) {
    h->is_container = 1;
    h->count = (c & 0x0f) * ((c & 0xf0) == 0x80 ? 2u : 1u);
    return 0;
  }
  if ((c & 0xe0) == 0xa0) {
    h->skip += c & 0x1f;
    return 0;
  }
  static const signed char fixed[] = {/* c4..cb */ -1,       -2, -4, -1, -2, -4, 4, 8,
                                      /* cc..d3 */ 1,        2,  4,  8,  1,  2,  4, 8,
                                      /* d4..d8 fixext */ 1, 2,  4,  8,  16,
                                      /* d9..db str */ -1,   -2, -4,
                                      /* dc..df */ -2,       -4, -2, -4};
  if (c == 0xc1)
    return -1;
  int f = fixed[c - 0xc4];
  int is_ext = (c >= 0xc7 && c <= 0xc9) || (c >= 0xd4 && c <= 0xd8);
  if (f > 0) {
    h->skip += (uint64_t)f + (is_ext ? 1 : 0);
    h->is_ext = is_ext;
    h->ext_len = is_ext ? (uint64_t)f : 0;
    if (is_ext && left >= 2)
      h->ext_type = (signed char)p[1];
    return 0;
  }
  int n = -f;
  if (left < 1 + (size_t)n)
    return -1;
  uint64_t len = be(p + 1, n);
  h->skip += (uint64_t)n;
  if (c >= 0xdc) {
    h->is_container = 1;
    h->count = len * (c >= 0xde ? 2u : 1u);
    return 0;
  }
  if (is_ext) {
    h->is_ext = 1;
    h->ext_len = len;
    if (left >= 2 + (size_t)n)
      h->ext_type = (signed char)p[1 + n];
    h->skip += 1;
  }
  h->skip += len;
  return 0;
}

static int scan(const unsigned char *p, size_t len, int depth0, int want_array, size_t *used);

/* Checks an extension item: only tuples are known; their payload is scanned in turn. */
static int scan_ext(const unsigned char *p, size_t pos, const head *h, int depth) {
  if (h->ext_type != MP_VALUE_EXT_TUPLE)
    return malformed("unknown extension type", pos);
  const unsigned char *payload = p + pos + h->skip - h->ext_len;
  size_t used = 0;
  int rc = scan(payload, (size_t)h->ext_len, depth, 1, &used);
  if (rc == 0 && used != h->ext_len)
    rc = malformed("trailing bytes in a tuple", pos);
  return rc;
}

/* Validates the one MessagePack item that starts p[0..len) (an array if want_array), with
 * counts no larger than the bytes left and at most MP_VALUE_MAX_DEPTH levels of containers,
 * given depth0 levels around it; *used receives its length. */
static int scan(const unsigned char *p, size_t len, int depth0, int want_array, size_t *used) {
  uint64_t pending[MP_VALUE_MAX_DEPTH + 1]; /* items still expected at each open level */
  int top = 0;
  size_t pos = 0;
  pending[0] = 1;
  if (want_array && (len == 0 || !((p[0] & 0xf0) == 0x90 || p[0] == 0xdc || p[0] == 0xdd)))
    return malformed("tuple payload is not an array", 0);
  for (;;) {
    while (top >= 0 && pending[top] == 0)
      top--;
    if (top < 0)
      break;
    pending[top]--;
    if (pos >= len)
      return malformed("truncated input", pos);
    head h;
    if (parse_head(p + pos, len - pos, &h) < 0)
      return malformed("bad or truncated type byte", pos);
    if (h.skip > len - pos)
      return malformed("length runs past the end", pos);
    int depth = depth0 + top;
    if (h.is_container || h.is_ext) {
      if (depth + 1 > MP_VALUE_MAX_DEPTH)
        return mp_set_error(MP_EPROTO, "MessagePack nests deeper than %d containers",
                            MP_VALUE_MAX_DEPTH);
    }
    if (h.is_ext) {
      int rc = scan_ext(p, pos, &h, depth);
      if (rc < 0)
        return rc;
    }
    pos += (size_t)h.skip;
    if (h.is_container) {
      if (h.count > len - pos)
        return malformed("item count larger than the input", pos);
      pending[++top] = h.count;
    }
  }
  *used = pos;
  return 0;
}

/* A scalar's length (header and payload) if p starts one that fits in len bytes, else 0:
 * the common case of pool items, checked without the scan's machinery. */
static size_t scalar_len(const unsigned char *p, size_t len) {
  head h;
  if (len == 0 || p[0] == 0xc1 || parse_head(p, len, &h) < 0 || h.is_container || h.is_ext)
    return 0;
  return h.skip <= len ? (size_t)h.skip : 0;
}

int mp__value_skip(const void *p, size_t len, size_t *used) {
  if (len == 0)
    return malformed("empty input", 0);
  if ((*used = scalar_len(p, len)) > 0)
    return 0;
  return scan(p, len, 0, 0, used);
}

int mp__value_check(const void *p, size_t len) {
  size_t used = 0;
  int rc = mp__value_skip(p, len, &used);
  return rc < 0 || used == len ? rc : malformed("trailing bytes after the value", used);
}

int mp__value_array_head(const void *buf, size_t len, size_t *count, size_t *used) {
  const unsigned char *p = buf;
  head h;
  if (len == 0 || parse_head(p, len, &h) < 0 || !h.is_container || (p[0] & 0xf0) == 0x80 ||
      p[0] == 0xde || p[0] == 0xdf)
    return malformed("not an array", 0);
  if (h.skip > len || h.count > len - h.skip)
    return malformed("item count larger than the input", 0);
  *count = (size_t)h.count;
  *used = (size_t)h.skip;
  return 0;
}

int mp__value_ext_head(const void *buf, size_t len, int *type, const unsigned char **payload,
                       size_t *payload_len, size_t *used) {
  const unsigned char *p = buf;
  head h;
  if (len == 0)
    return malformed("empty input", 0);
  if (parse_head(p, len, &h) < 0)
    return malformed("bad or truncated type byte", 0);
  if (!h.is_ext)
    return 0;
  if (h.skip > len)
    return malformed("extension runs past the end", 0);
  *type = h.ext_type;
  *payload = p + h.skip - h.ext_len;
  *payload_len = (size_t)h.ext_len;
  *used = (size_t)h.skip;
  return 1;
}

/* ---- decoding: scanned bytes to values ---------------------------------------------- */

/* Builds a string or bytes value; bad UTF-8 in a string is a protocol error here. */
static int build_blob(mp__value_arena *a, mp_value_type type, const unsigned char *p, size_t n,
                      mp_value **out) {
  if (type == MP_VALUE_STR && n > 0 && !utf8_valid(p, n))
    return mp_set_error(MP_EPROTO, "MessagePack string is not valid UTF-8");
  *out = arena_blob(a, type, p, n);
  return *out ? 0 : MP_ENOMEM;
}

static int build_int(mp__value_arena *a, const unsigned char *p, int n, int is_signed,
                     mp_value **out) {
  uint64_t u = be(p, n);
  int64_t i;
  if (is_signed) /* sign-extend the n-byte two's complement value */
    i = n == 8 ? (int64_t)u : (int64_t)(u ^ (1ull << (8 * n - 1))) - (int64_t)(1ull << (8 * n - 1));
  else if (u > INT64_MAX)
    return mp_set_error(MP_EPROTO, "integer %llu does not fit in 64 signed bits",
                        (unsigned long long)u);
  else
    i = (int64_t)u;
  if ((*out = arena_value(a, MP_VALUE_INT)) == NULL)
    return MP_ENOMEM;
  (*out)->u.i = i;
  return 0;
}

static int build_double(mp__value_arena *a, const unsigned char *p, int n, mp_value **out) {
  uint64_t u = be(p, n);
  double d;
  if (n == 4) {
    uint32_t w = (uint32_t)u;
    float f;
    memcpy(&f, &w, sizeof f);
    d = f;
  } else {
    memcpy(&d, &u, sizeof d);
  }
  if ((*out = arena_value(a, MP_VALUE_DOUBLE)) == NULL)
    return MP_ENOMEM;
  (*out)->u.d = d;
  return 0;
}

/* nil, false or true. */
static int build_word(mp__value_arena *a, mp_value_type type, int b, mp_value **out) {
  if ((*out = arena_value(a, type)) == NULL)
    return MP_ENOMEM;
  (*out)->u.b = b;
  return 1;
}

/* Decodes a scalar at p (already scanned): 1 if it was one, 0 if p holds a container or an
 * extension, or an error. */
static int build_scalar(mp__value_arena *a, const unsigned char *p, mp_value **out) {
  unsigned c = p[0];
  if (c <= 0x7f || c >= 0xe0) {
    if ((*out = arena_value(a, MP_VALUE_INT)) == NULL)
      return MP_ENOMEM;
    (*out)->u.i = (int8_t)c;
    return 1;
  }
  if ((c & 0xe0) == 0xa0)
    return build_blob(a, MP_VALUE_STR, p + 1, c & 0x1f, out) < 0 ? mp_last_error_code() : 1;
  int rc;
  switch (c) {
  case 0xc0: return build_word(a, MP_VALUE_NIL, 0, out);
  case 0xc2:
  case 0xc3: return build_word(a, MP_VALUE_BOOL, c == 0xc3, out);
  case 0xcc: rc = build_int(a, p + 1, 1, 0, out); break;
  case 0xcd: rc = build_int(a, p + 1, 2, 0, out); break;
  case 0xce: rc = build_int(a, p + 1, 4, 0, out); break;
  case 0xcf: rc = build_int(a, p + 1, 8, 0, out); break;
  case 0xd0: rc = build_int(a, p + 1, 1, 1, out); break;
  case 0xd1: rc = build_int(a, p + 1, 2, 1, out); break;
  case 0xd2: rc = build_int(a, p + 1, 4, 1, out); break;
  case 0xd3: rc = build_int(a, p + 1, 8, 1, out); break;
  case 0xca: rc = build_double(a, p + 1, 4, out); break;
  case 0xcb: rc = build_double(a, p + 1, 8, out); break;
  case 0xd9: rc = build_blob(a, MP_VALUE_STR, p + 2, (size_t)be(p + 1, 1), out); break;
  case 0xda: rc = build_blob(a, MP_VALUE_STR, p + 3, (size_t)be(p + 1, 2), out); break;
  case 0xdb: rc = build_blob(a, MP_VALUE_STR, p + 5, (size_t)be(p + 1, 4), out); break;
  case 0xc4: rc = build_blob(a, MP_VALUE_BYTES, p + 2, (size_t)be(p + 1, 1), out); break;
  case 0xc5: rc = build_blob(a, MP_VALUE_BYTES, p + 3, (size_t)be(p + 1, 2), out); break;
  case 0xc6: rc = build_blob(a, MP_VALUE_BYTES, p + 5, (size_t)be(p + 1, 4), out); break;
  default: return 0;
  }
  return rc < 0 ? rc : 1;
}

static int build(mp__value_arena *a, const unsigned char *p, size_t len, mp_value **out,
                 size_t *used);

/* Builds count items (pairs for a dict) that start at p into c. */
static int build_items(mp__value_arena *a, const unsigned char *p, size_t len, uint64_t count,
                       mp_value *c, size_t *used) {
  size_t pos = 0;
  int rc = reserve(c, (size_t)count); /* count <= bytes left, checked by the scan */
  for (uint64_t i = 0; rc == 0 && i < count; i++) {
    mp_value *item = NULL;
    size_t n = 0;
    rc = build(a, p + pos, len - pos, &item, &n);
    if (rc == 0) {
      c->u.seq.items[c->u.seq.len++] = item;
      pos += n;
    }
  }
  *used = pos;
  return rc;
}

/* Builds the value at p, which scan() has validated: its counts fit the bytes, its nesting
 * is bounded (so is this recursion) and its only extension type is the tuple. */
static int build(mp__value_arena *a, const unsigned char *p, size_t len, mp_value **out,
                 size_t *used) {
  head h;
  *out = NULL;
  if (len == 0 || parse_head(p, len, &h) < 0 || h.skip > len)
    return malformed("truncated input", 0); /* unreachable after a scan; kept as a guard */
  if (!h.is_container && !h.is_ext) {
    int rc = build_scalar(a, p, out);
    *used = (size_t)h.skip;
    return rc < 0 ? rc : 0;
  }
  const unsigned char *items = p + h.skip;
  size_t left = len - (size_t)h.skip;
  uint64_t count = h.count;
  mp_value_type type = (p[0] & 0xf0) == 0x80 || p[0] >= 0xde ? MP_VALUE_DICT : MP_VALUE_LIST;
  if (h.is_ext) { /* a tuple: its payload is an array */
    size_t ahead = 0, n = 0;
    items = p + h.skip - h.ext_len;
    int rc = mp__value_array_head(items, (size_t)h.ext_len, &n, &ahead);
    if (rc < 0)
      return rc;
    items += ahead;
    left = (size_t)h.ext_len - ahead;
    count = n;
    type = MP_VALUE_TUPLE;
  }
  mp_value *c = arena_value(a, type);
  if (c == NULL)
    return MP_ENOMEM;
  size_t n = 0;
  int rc = build_items(a, items, left, count, c, &n);
  if (rc < 0) {
    mp_value_free(c);
    return rc;
  }
  *out = c;
  *used = h.is_ext ? (size_t)h.skip : (size_t)h.skip + n;
  return 0;
}

int mp__value_decode_in(mp__value_arena *a, const void *buf, size_t len, mp_value **v,
                        size_t *used) {
  size_t n = scalar_len(buf, len);
  if (n > 0) { /* no scan needed: nothing of it can claim more than the bytes present */
    int rc = build_scalar(a, buf, v);
    *used = n;
    return rc < 0 ? rc : 0;
  }
  int rc = mp__value_skip(buf, len, &n);
  return rc < 0 ? rc : build(a, buf, n, v, used);
}

int mp__value_decode_prefix(const void *buf, size_t len, mp_value **v, size_t *used) {
  return mp__value_decode_in(NULL, buf, len, v, used);
}

int mp_value_decode(const void *buf, size_t len, mp_value **v) {
  if (v == NULL || (buf == NULL && len > 0))
    return mp_set_error(MP_EINVAL, "mp_value_decode: buf or v is NULL");
  size_t used = 0;
  int rc = mp__value_check(buf, len);
  return rc < 0 ? rc : build(NULL, buf, len, v, &used);
}
