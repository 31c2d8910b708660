/* Typed values and their MessagePack encoding (msgpack-c). A tuple travels as extension
 * type MP_VALUE_EXT_TUPLE whose payload is a MessagePack array, so list and tuple stay
 * distinct. Decoding scans the input first (scan_object) so that msgpack-c never sees a
 * nesting deeper than MP_VALUE_MAX_DEPTH nor an item count larger than the bytes left,
 * which bounds its allocations by the input's size. */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "value.h"

#define MP_VALUE_EXT_TUPLE 16

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
};

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

static mp_value *new_blob(mp_value_type type, const void *data, size_t len) {
  mp_value *v = new_value(type);
  if (v == NULL)
    return NULL;
  v->u.s.ptr = malloc(len + 1);
  if (v->u.s.ptr == NULL) {
    free(v);
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

void mp_value_free(mp_value *v) {
  if (v == NULL)
    return;
  if (v->type == MP_VALUE_STR || v->type == MP_VALUE_BYTES)
    free(v->u.s.ptr);
  if (v->type >= MP_VALUE_LIST) {
    for (size_t i = 0; i < v->u.seq.len; i++)
      mp_value_free(v->u.seq.items[i]);
    free(v->u.seq.items);
  }
  free(v);
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
  msgpack_sbuffer sb;
  msgpack_packer inner;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&inner, &sb, msgpack_sbuffer_write);
  int rc = msgpack_pack_array(&inner, v->u.seq.len) < 0 ? MP_ENOMEM : 0;
  if (rc == 0)
    rc = pack_items(&inner, v, depth);
  if (rc == 0 && sb.size > UINT32_MAX)
    rc = mp_set_error(MP_EINVAL, "a tuple's encoding exceeds 4 GiB");
  if (rc == 0 && (msgpack_pack_ext(pk, sb.size, MP_VALUE_EXT_TUPLE) < 0 ||
                  msgpack_pack_ext_body(pk, sb.data, sb.size) < 0))
    rc = MP_ENOMEM;
  msgpack_sbuffer_destroy(&sb);
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

int mp_value_encode(const mp_value *v, void **buf, size_t *len) {
  if (v == NULL || buf == NULL || len == NULL)
    return mp_set_error(MP_EINVAL, "mp_value_encode: value, buf or len is NULL");
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  int rc = pack(&pk, v, 0);
  if (rc < 0) {
    msgpack_sbuffer_destroy(&sb);
    return rc;
  }
  if (sb.data == NULL) /* cannot happen for a packed value, but never return NULL */
    return mp_set_error(MP_ENOMEM, "out of memory encoding");
  *len = sb.size;
  *buf = msgpack_sbuffer_release(&sb);
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

static int scan_object(const unsigned char *p, size_t len, int depth0, int want_array);

/* Checks an extension item: only tuples are known; their payload is scanned in turn. */
static int scan_ext(const unsigned char *p, size_t pos, const head *h, int depth) {
  if (h->ext_type != MP_VALUE_EXT_TUPLE)
    return malformed("unknown extension type", pos);
  const unsigned char *payload = p + pos + h->skip - h->ext_len;
  return scan_object(payload, (size_t)h->ext_len, depth, 1);
}

/* Validates that p[0..len) holds exactly one MessagePack item (an array if want_array),
 * with counts no larger than the bytes left and at most MP_VALUE_MAX_DEPTH levels of
 * containers, given depth0 levels around it. */
static int scan_object(const unsigned char *p, size_t len, int depth0, int want_array) {
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
  if (pos != len)
    return malformed("trailing bytes after the value", pos);
  return 0;
}

/* ---- decoding: msgpack-c objects to values ------------------------------------------- */

static int from_object(const msgpack_object *o, mp_value **out);

/* Unpacks exactly one already scanned item. */
static int unpack_one(const char *buf, size_t len, msgpack_unpacked *u) {
  size_t off = 0;
  msgpack_unpacked_init(u);
  msgpack_unpack_return r = msgpack_unpack_next(u, buf, len, &off);
  if (r == MSGPACK_UNPACK_SUCCESS && off == len)
    return 0;
  msgpack_unpacked_destroy(u);
  if (r == MSGPACK_UNPACK_NOMEM_ERROR)
    return mp_set_error(MP_ENOMEM, "out of memory decoding MessagePack");
  return mp_set_error(MP_EPROTO, "malformed MessagePack (msgpack-c error %d)", (int)r);
}

static int from_container(const msgpack_object *o, mp_value *c) {
  size_t n = o->type == MSGPACK_OBJECT_MAP ? o->via.map.size : o->via.array.size;
  for (size_t i = 0; i < n; i++) {
    mp_value *a = NULL, *b = NULL;
    int rc;
    if (o->type == MSGPACK_OBJECT_MAP) {
      rc = from_object(&o->via.map.ptr[i].key, &a);
      if (rc == 0)
        rc = from_object(&o->via.map.ptr[i].val, &b);
      if (rc == 0)
        rc = dict_push(c, a, b);
    } else {
      rc = from_object(&o->via.array.ptr[i], &a);
      if (rc == 0)
        rc = reserve(c, 1);
      if (rc == 0)
        c->u.seq.items[c->u.seq.len++] = a;
    }
    if (rc < 0) {
      mp_value_free(a);
      mp_value_free(b);
      return rc;
    }
  }
  return 0;
}

static int from_tuple(const msgpack_object_ext *ext, mp_value **out) {
  msgpack_unpacked u;
  int rc = unpack_one(ext->ptr, ext->size, &u);
  if (rc < 0)
    return rc;
  mp_value *t = mp_value_tuple();
  rc = t ? from_container(&u.data, t) : MP_ENOMEM;
  msgpack_unpacked_destroy(&u);
  if (rc < 0) {
    mp_value_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

static mp_value *from_scalar(const msgpack_object *o) {
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: return mp_value_nil();
  case MSGPACK_OBJECT_BOOLEAN: return mp_value_bool(o->via.boolean);
  case MSGPACK_OBJECT_POSITIVE_INTEGER: return mp_value_int((int64_t)o->via.u64);
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return mp_value_int(o->via.i64);
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return mp_value_double(o->via.f64);
  case MSGPACK_OBJECT_BIN: return mp_value_bytes(o->via.bin.ptr, o->via.bin.size);
  default: return mp_value_strn(o->via.str.ptr, o->via.str.size);
  }
}

static int from_object(const msgpack_object *o, mp_value **out) {
  if (o->type == MSGPACK_OBJECT_EXT)
    return from_tuple(&o->via.ext, out); /* the scan admitted only tuples */
  if (o->type == MSGPACK_OBJECT_ARRAY || o->type == MSGPACK_OBJECT_MAP) {
    mp_value *c = o->type == MSGPACK_OBJECT_MAP ? mp_value_dict() : mp_value_list();
    int rc = c ? from_container(o, c) : MP_ENOMEM;
    if (rc < 0) {
      mp_value_free(c);
      return rc;
    }
    *out = c;
    return 0;
  }
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 > INT64_MAX)
    return mp_set_error(MP_EPROTO, "integer %llu does not fit in 64 signed bits",
                        (unsigned long long)o->via.u64);
  *out = from_scalar(o);
  if (*out == NULL) /* strings: bad UTF-8 is a protocol error, not a bad argument */
    return mp_last_error_code() == MP_ENOMEM
               ? MP_ENOMEM
               : mp_set_error(MP_EPROTO, "MessagePack string is not valid UTF-8");
  return 0;
}

int mp_value_decode(const void *buf, size_t len, mp_value **v) {
  if (v == NULL || (buf == NULL && len > 0))
    return mp_set_error(MP_EINVAL, "mp_value_decode: buf or v is NULL");
  if (len == 0)
    return mp_set_error(MP_EPROTO, "malformed MessagePack: empty input");
  int rc = scan_object(buf, len, 0, 0);
  if (rc < 0)
    return rc;
  msgpack_unpacked u;
  rc = unpack_one(buf, len, &u);
  if (rc < 0)
    return rc;
  rc = from_object(&u.data, v);
  msgpack_unpacked_destroy(&u);
  return rc;
}
