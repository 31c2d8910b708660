/* mp_args: the arguments of a child's target or a pool task, a tuple of mp_values plus object
 * slots (connections, queues, locks, shared memory), and their one encoding.
 *
 * The encoding is value.c's MessagePack: an array with one item per argument. A value is
 * encoded as mp_value_encode does; an object is an extension value whose type is its
 * passable type's id (xfer.h; never the tuple's 16) and whose payload is [handle count u8]
 * [index of its first handle u16][the type's blob]. The OS handles travel beside the bytes
 * (process.c, the pool), in the order the objects name them. */
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "buf.h"
#include "value.h"
#include "xfer.h"
#include "args.h"

typedef struct mp_arg {
  mp_value *v;            /* a value argument; NULL for an object */
  const mp__xfer_type *t; /* an object argument: its type, */
  void *obj;              /* the object, */
  int imported;           /* and whether this process built it (released with the args) */
} mp_arg;

struct mp_args {
  mp_arg *a;
  size_t n, cap;
};

#define OBJ_HEAD 3 /* an object's payload: handle count, first handle (u16), then its blob */

/* ---- registry of passable types: one line per type ---------------------------------- */

static const mp__xfer_type *const registry[] = {
    &mp__conn_xfer, &mp__plock_xfer,  &mp__psem_xfer,  &mp__pevent_xfer,
    &mp__shm_xfer,  &mp__shared_xfer, &mp__queue_xfer,
};

const mp__xfer_type *mp__xfer_lookup(uint8_t id) {
  for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
    if (registry[i] && registry[i]->id == id)
      return registry[i];
  return NULL;
}

/* ---- building ----------------------------------------------------------------------- */

int mp_args_create(mp_args **args) {
  if (args == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_create: args is NULL");
  *args = calloc(1, sizeof **args);
  return *args ? 0 : mp_set_error(MP_ENOMEM, "mp_args_create: out of memory");
}

void mp_args_free(mp_args *args) {
  if (args == NULL)
    return;
  for (size_t i = 0; i < args->n; i++) {
    mp_arg *a = &args->a[i];
    mp_value_free(a->v);
    if (a->imported && a->t->release_imported)
      a->t->release_imported(a->obj);
  }
  free(args->a);
  free(args);
}

/* Makes room for one more argument: its slot, zeroed, or NULL with the error set. */
static mp_arg *slot(mp_args *args, const char *fn) {
  if (args == NULL) {
    mp_set_error(MP_EINVAL, "%s: args is NULL", fn);
    return NULL;
  }
  if (args->n >= MP_ARGS_MAX) {
    mp_set_error(MP_EINVAL, "%s: an argument list holds at most %d arguments", fn, MP_ARGS_MAX);
    return NULL;
  }
  if (args->n == args->cap) {
    size_t cap = args->cap ? args->cap * 2 : 8;
    mp_arg *a = realloc(args->a, cap * sizeof *a);
    if (a == NULL) {
      mp_set_error(MP_ENOMEM, "%s: out of memory", fn);
      return NULL;
    }
    args->a = a;
    args->cap = cap;
  }
  mp_arg *a = &args->a[args->n];
  memset(a, 0, sizeof *a);
  return a;
}

/* Appends v (taken: freed on failure too). */
static int push_value(mp_args *args, mp_value *v, const char *fn) {
  if (v == NULL)
    return mp_last_error_code() ? mp_last_error_code() : MP_ENOMEM;
  mp_arg *a = slot(args, fn);
  if (a == NULL) {
    mp_value_free(v);
    return mp_last_error_code();
  }
  a->v = v;
  args->n++;
  return 0;
}

int mp_args_add_nil(mp_args *args) { return push_value(args, mp_value_nil(), "mp_args_add_nil"); }

int mp_args_add_bool(mp_args *args, int value) {
  return push_value(args, mp_value_bool(value), "mp_args_add_bool");
}

int mp_args_add_int(mp_args *args, int64_t value) {
  return push_value(args, mp_value_int(value), "mp_args_add_int");
}

int mp_args_add_double(mp_args *args, double value) {
  return push_value(args, mp_value_double(value), "mp_args_add_double");
}

int mp_args_add_str(mp_args *args, const char *value) {
  if (value == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_add_str: value is NULL");
  mp_value *v = mp_value_str(value);
  if (v == NULL && mp_last_error_code() == MP_EINVAL)
    return mp_set_error(MP_EINVAL, "mp_args_add_str: value is not valid UTF-8");
  return push_value(args, v, "mp_args_add_str");
}

int mp_args_add_bytes(mp_args *args, const void *data, size_t len) {
  if (data == NULL && len > 0)
    return mp_set_error(MP_EINVAL, "mp_args_add_bytes: data is NULL but len is %zu", len);
  return push_value(args, mp_value_bytes(data, len), "mp_args_add_bytes");
}

int mp_args_add_value(mp_args *args, const mp_value *v) {
  if (v == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_add_value: value is NULL");
  return push_value(args, mp_value_copy(v), "mp_args_add_value");
}

int mp__args_add_object(mp_args *args, const mp__xfer_type *type, void *obj) {
  if (obj == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_add_%s: object is NULL", type->name);
  mp_arg *a = slot(args, "mp_args_add_object");
  if (a == NULL)
    return mp_last_error_code();
  a->t = type;
  a->obj = obj;
  args->n++;
  return 0;
}

int mp_args_add_conn(mp_args *args, mp_conn *conn) {
  return mp__args_add_object(args, &mp__conn_xfer, conn);
}

/* ---- reading ------------------------------------------------------------------------ */

size_t mp_args_count(const mp_args *args) { return args ? args->n : 0; }

/* The MP_ARG_* type of an argument. */
static int arg_type(const mp_arg *a) {
  static const int of_value[] = {MP_ARG_NIL,   MP_ARG_BOOL, MP_ARG_INT,   MP_ARG_DOUBLE, MP_ARG_STR,
                                 MP_ARG_BYTES, MP_ARG_LIST, MP_ARG_TUPLE, MP_ARG_DICT};
  if (a->v)
    return of_value[mp_value_type_of(a->v)];
  return a->t->id == MP_XFER_CONN ? MP_ARG_CONN : MP_ARG_OBJECT;
}

static const char *arg_name(const mp_arg *a) {
  static const char *const names[] = {"nil",   "bool", "int",   "double", "str",
                                      "bytes", "list", "tuple", "dict"};
  return a->v ? names[mp_value_type_of(a->v)] : a->t->name;
}

int mp_args_type(const mp_args *args, size_t i) {
  if (args == NULL || i >= args->n)
    return mp_set_error(MP_EINVAL, "mp_args_type: no argument %zu", i);
  return arg_type(&args->a[i]);
}

static const mp_arg *get(const mp_args *args, size_t i, const char *fn) {
  if (args == NULL || i >= args->n) {
    mp_set_error(MP_EINVAL, "%s: no argument %zu (there are %zu)", fn, i, args ? args->n : 0);
    return NULL;
  }
  return &args->a[i];
}

int mp_args_get_value(const mp_args *args, size_t i, const mp_value **v) {
  const mp_arg *a = get(args, i, "mp_args_get_value");
  if (a == NULL)
    return MP_EINVAL;
  if (v == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_get_value: v is NULL");
  if (a->v == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_get_value: argument %zu is a %s, not a value", i,
                        arg_name(a));
  *v = a->v;
  return 0;
}

/* Reads argument i as a value of the given type, or fails naming both types. */
static const mp_value *get_typed(const mp_args *args, size_t i, mp_value_type type,
                                 const char *fn) {
  static const char *const names[] = {"nil", "bool", "int", "double", "str", "bytes"};
  const mp_arg *a = get(args, i, fn);
  if (a && (a->v == NULL || mp_value_type_of(a->v) != (int)type)) {
    mp_set_error(MP_EINVAL, "%s: argument %zu is a %s, not a %s", fn, i, arg_name(a), names[type]);
    return NULL;
  }
  return a ? a->v : NULL;
}

int mp_args_get_bool(const mp_args *args, size_t i, int *value) {
  const mp_value *v = get_typed(args, i, MP_VALUE_BOOL, "mp_args_get_bool");
  if (v == NULL || value == NULL)
    return v ? mp_set_error(MP_EINVAL, "mp_args_get_bool: value is NULL") : MP_EINVAL;
  return mp_value_get_bool(v, value);
}

int mp_args_get_int(const mp_args *args, size_t i, int64_t *value) {
  const mp_value *v = get_typed(args, i, MP_VALUE_INT, "mp_args_get_int");
  if (v == NULL || value == NULL)
    return v ? mp_set_error(MP_EINVAL, "mp_args_get_int: value is NULL") : MP_EINVAL;
  return mp_value_get_int(v, value);
}

int mp_args_get_double(const mp_args *args, size_t i, double *value) {
  const mp_value *v = get_typed(args, i, MP_VALUE_DOUBLE, "mp_args_get_double");
  if (v == NULL || value == NULL)
    return v ? mp_set_error(MP_EINVAL, "mp_args_get_double: value is NULL") : MP_EINVAL;
  return mp_value_get_double(v, value);
}

int mp_args_get_str(const mp_args *args, size_t i, const char **value, size_t *len) {
  const mp_value *v = get_typed(args, i, MP_VALUE_STR, "mp_args_get_str");
  if (v == NULL || value == NULL)
    return v ? mp_set_error(MP_EINVAL, "mp_args_get_str: value is NULL") : MP_EINVAL;
  return mp_value_get_str(v, value, len);
}

int mp_args_get_bytes(const mp_args *args, size_t i, const void **data, size_t *len) {
  const mp_value *v = get_typed(args, i, MP_VALUE_BYTES, "mp_args_get_bytes");
  if (v == NULL || data == NULL || len == NULL)
    return v ? mp_set_error(MP_EINVAL, "mp_args_get_bytes: data or len is NULL") : MP_EINVAL;
  return mp_value_get_bytes(v, data, len);
}

int mp__args_get_object(const mp_args *args, size_t i, const mp__xfer_type *type, void **obj) {
  const mp_arg *a = get(args, i, "mp_args_get_object");
  if (a == NULL)
    return MP_EINVAL;
  if (obj == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_get_%s: out pointer is NULL", type->name);
  if (a->t != type)
    return mp_set_error(MP_EINVAL, "mp_args_get_%s: argument %zu is a %s, not a %s", type->name, i,
                        arg_name(a), type->name);
  *obj = a->obj;
  return 0;
}

int mp_args_get_conn(const mp_args *args, size_t i, mp_conn **conn) {
  return mp__args_get_object(args, i, &mp__conn_xfer, (void **)conn);
}

int mp__args_copy(const mp_args *src, mp_args **out) {
  int rc = mp_args_create(out);
  for (size_t i = 0; rc == 0 && src && i < src->n; i++) {
    const mp_arg *a = &src->a[i];
    rc = a->v ? push_value(*out, mp_value_copy(a->v), "mp_args copy")
              : mp__args_add_object(*out, a->t, a->obj); /* the copy never owns an object */
  }
  if (rc && *out) {
    mp_args_free(*out);
    *out = NULL;
  }
  return rc;
}

/* ---- the encoding ------------------------------------------------------------------- */

static int encode_object(mp__buf *b, const mp_arg *a, mp_plat_handle *handles, size_t *nhandles,
                         size_t max) {
  mp__xfer x;
  memset(&x, 0, sizeof x);
  int rc = a->t->export_obj(a->obj, &x);
  if (rc)
    return rc;
  if (*nhandles + x.nhandles > max || *nhandles + x.nhandles > 0xffff)
    return mp_set_error(MP_EINVAL, "too many handles in the arguments (limit %zu)", max);
  if (x.blob_len > MP_XFER_MAX_BLOB || x.nhandles > MP_XFER_MAX_HANDLES)
    return mp_set_error(MP_EINVAL, "a %s exported more than its type may", a->t->name);
  unsigned char head[OBJ_HEAD] = {(unsigned char)x.nhandles, (unsigned char)(*nhandles >> 8),
                                  (unsigned char)(*nhandles & 0xff)};
  for (size_t k = 0; k < x.nhandles; k++)
    handles[(*nhandles)++] = x.handles[k];
  rc = mp__value_put_ext_head(b, a->t->id, OBJ_HEAD + x.blob_len);
  rc = rc ? rc : mp__buf_put(b, head, OBJ_HEAD);
  return rc ? rc : mp__buf_put(b, x.blob, x.blob_len);
}

int mp__args_encode_append(const mp_args *args, mp__buf *b, mp_plat_handle *handles,
                           size_t *nhandles, size_t max) {
  size_t n = args ? args->n : 0, start = b->len;
  int rc = mp__value_put_array_head(b, n);
  for (size_t i = 0; i < n && rc == 0; i++) {
    const mp_arg *a = &args->a[i];
    rc = a->v ? mp__value_encode_append(a->v, b) : encode_object(b, a, handles, nhandles, max);
  }
  if (rc < 0)
    b->len = start;
  return rc;
}

int mp__args_encode(const mp_args *args, char **buf, size_t *len, mp_plat_handle *handles,
                    size_t *nhandles, size_t max) {
  mp__buf b = {0};
  int rc = mp__args_encode_append(args, &b, handles, nhandles, max);
  if (rc < 0) {
    mp__buf_free(&b);
    return rc;
  }
  *buf = (char *)b.data; /* malloc'd: the caller frees it */
  *len = b.len;
  return 0;
}

/* ---- decoding (bytes from the parent process: hostile until proven otherwise) -------- */

typedef struct decoder {
  const mp_plat_handle *handles;
  size_t nhandles, next; /* objects take the handles in order, each exactly once */
  mp__xfer_lookup_fn lookup;
} decoder;

static int decode_object(mp_args *out, decoder *d, int type, const unsigned char *p, size_t len) {
  const mp__xfer_type *t = type > 0 && type < 256 ? d->lookup((uint8_t)type) : NULL;
  if (t == NULL)
    return mp_set_error(MP_EPROTO, "arguments: unknown object type %d", type);
  if (len < OBJ_HEAD || len - OBJ_HEAD > MP_XFER_MAX_BLOB)
    return mp_set_error(MP_EPROTO, "arguments: a %s record of %zu bytes is malformed", t->name,
                        len);
  size_t nh = p[0], first = ((size_t)p[1] << 8) | p[2];
  if (nh > MP_XFER_MAX_HANDLES || first != d->next || nh > d->nhandles - d->next)
    return mp_set_error(MP_EPROTO, "arguments: a %s names handles that were not sent", t->name);
  mp__xfer x;
  memset(&x, 0, sizeof x);
  x.nhandles = nh;
  for (size_t k = 0; k < nh; k++)
    x.handles[k] = d->handles[first + k];
  d->next += nh;
  x.blob_len = len - OBJ_HEAD;
  memcpy(x.blob, p + OBJ_HEAD, x.blob_len);
  void *obj = NULL;
  int rc = t->import_obj(&x, &obj);
  if (rc)
    return rc;
  rc = mp__args_add_object(out, t, obj);
  if (rc) {
    t->release_imported(obj);
    return rc;
  }
  out->a[out->n - 1].imported = 1;
  return 0;
}

/* Decodes the argument at p: a value, or an object (an extension other than a tuple). */
static int decode_arg(mp_args *out, decoder *d, const unsigned char *p, size_t len, size_t *used) {
  int type = 0;
  const unsigned char *payload = NULL;
  size_t plen = 0;
  int ext = mp__value_ext_head(p, len, &type, &payload, &plen, used);
  if (ext < 0)
    return ext;
  if (ext && type != MP__VALUE_EXT_TUPLE)
    return decode_object(out, d, type, payload, plen);
  mp_value *v = NULL;
  int rc = mp__value_decode_prefix(p, len, &v, used);
  return rc < 0 ? rc : push_value(out, v, "arguments");
}

int mp__args_decode_with(const char *buf, size_t len, const mp_plat_handle *handles,
                         size_t nhandles, mp__xfer_lookup_fn lookup, mp_args **out) {
  const unsigned char *p = (const unsigned char *)buf;
  size_t count = 0, pos = 0;
  *out = NULL;
  int rc = mp__value_array_head(p, len, &count, &pos);
  if (rc == 0 && count > MP_ARGS_MAX)
    rc = mp_set_error(MP_EPROTO, "arguments: %zu arguments, more than MP_ARGS_MAX", count);
  rc = rc ? rc : mp_args_create(out);
  decoder d = {handles, nhandles, 0, lookup};
  for (size_t i = 0; rc == 0 && i < count; i++) {
    size_t used = 0;
    rc = decode_arg(*out, &d, p + pos, len - pos, &used);
    pos += used;
  }
  if (rc == 0 && pos != len)
    rc = mp_set_error(MP_EPROTO, "arguments: %zu bytes after the last argument", len - pos);
  if (rc == 0 && d.next != nhandles)
    rc = mp_set_error(MP_EPROTO, "arguments: %zu handles were sent but only %zu named", nhandles,
                      d.next);
  if (rc && *out) {
    mp_args_free(*out); /* releases what was imported, closing its handles */
    *out = NULL;
  }
  for (size_t k = d.next; rc && k < nhandles; k++)
    mp_plat_handle_close(handles[k]); /* the rest were never imported: close them too */
  return rc;
}

int mp__args_decode(const char *buf, size_t len, const mp_plat_handle *handles, size_t nhandles,
                    mp_args **out) {
  return mp__args_decode_with(buf, len, handles, nhandles, mp__xfer_lookup, out);
}
