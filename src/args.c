/* mp_args: the typed argument list of a child's target, and its MessagePack form for
 * spawned children. Objects (connections, queues, locks, shared memory) travel as
 * extension values whose payload names the handles they need; see xfer.h. */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "multiproc.h"
#include "utf8.h"
#include "xfer.h"
#include "args.h"

typedef struct mp_arg {
  int type;
  union {
    int b;
    int64_t i;
    double d;
    struct {
      char *p; /* NUL-terminated for strings and bytes alike */
      size_t n;
    } s;
    struct {
      const mp__xfer_type *t;
      void *obj;
      int imported; /* built in this (child) process: released with the args */
    } o;
  } u;
} mp_arg;

struct mp_args {
  mp_arg *v;
  size_t n, cap;
};

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

static void arg_release(mp_arg *a) {
  if (a->type == MP_ARG_STR || a->type == MP_ARG_BYTES)
    free(a->u.s.p);
  else if ((a->type == MP_ARG_CONN || a->type == MP_ARG_OBJECT) && a->u.o.imported &&
           a->u.o.t->release_imported)
    a->u.o.t->release_imported(a->u.o.obj);
}

void mp_args_free(mp_args *args) {
  if (args == NULL)
    return;
  for (size_t i = 0; i < args->n; i++)
    arg_release(&args->v[i]);
  free(args->v);
  free(args);
}

static mp_arg *push(mp_args *args, const char *fn) {
  if (args == NULL) {
    mp_set_error(MP_EINVAL, "%s: args is NULL", fn);
    return NULL;
  }
  if (args->n == args->cap) {
    size_t cap = args->cap ? args->cap * 2 : 8;
    mp_arg *v = realloc(args->v, cap * sizeof *v);
    if (v == NULL) {
      mp_set_error(MP_ENOMEM, "%s: out of memory", fn);
      return NULL;
    }
    args->v = v;
    args->cap = cap;
  }
  mp_arg *a = &args->v[args->n];
  memset(a, 0, sizeof *a);
  return a;
}

int mp_args_add_nil(mp_args *args) {
  mp_arg *a = push(args, "mp_args_add_nil");
  if (a == NULL)
    return mp_last_error_code();
  a->type = MP_ARG_NIL;
  args->n++;
  return 0;
}

int mp_args_add_bool(mp_args *args, int value) {
  mp_arg *a = push(args, "mp_args_add_bool");
  if (a == NULL)
    return mp_last_error_code();
  a->type = MP_ARG_BOOL;
  a->u.b = value != 0;
  args->n++;
  return 0;
}

int mp_args_add_int(mp_args *args, int64_t value) {
  mp_arg *a = push(args, "mp_args_add_int");
  if (a == NULL)
    return mp_last_error_code();
  a->type = MP_ARG_INT;
  a->u.i = value;
  args->n++;
  return 0;
}

int mp_args_add_double(mp_args *args, double value) {
  mp_arg *a = push(args, "mp_args_add_double");
  if (a == NULL)
    return mp_last_error_code();
  a->type = MP_ARG_DOUBLE;
  a->u.d = value;
  args->n++;
  return 0;
}

static int add_buffer(mp_args *args, int type, const void *data, size_t len, const char *fn) {
  mp_arg *a = push(args, fn);
  if (a == NULL)
    return mp_last_error_code();
  char *copy = malloc(len + 1);
  if (copy == NULL)
    return mp_set_error(MP_ENOMEM, "%s: out of memory for %zu bytes", fn, len);
  if (len)
    memcpy(copy, data, len);
  copy[len] = '\0';
  a->type = type;
  a->u.s.p = copy;
  a->u.s.n = len;
  args->n++;
  return 0;
}

int mp_args_add_str(mp_args *args, const char *value) {
  if (value == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_add_str: value is NULL");
  size_t len = strlen(value);
  if (!mp__utf8_valid(value, len))
    return mp_set_error(MP_EINVAL, "mp_args_add_str: value is not valid UTF-8");
  return add_buffer(args, MP_ARG_STR, value, len, "mp_args_add_str");
}

int mp_args_add_bytes(mp_args *args, const void *data, size_t len) {
  if (data == NULL && len > 0)
    return mp_set_error(MP_EINVAL, "mp_args_add_bytes: data is NULL but len is %zu", len);
  return add_buffer(args, MP_ARG_BYTES, data, len, "mp_args_add_bytes");
}

int mp__args_add_object(mp_args *args, const mp__xfer_type *type, void *obj) {
  if (obj == NULL)
    return mp_set_error(MP_EINVAL, "mp_args_add_%s: object is NULL", type->name);
  mp_arg *a = push(args, "mp_args_add_object");
  if (a == NULL)
    return mp_last_error_code();
  a->type = type->id == MP_XFER_CONN ? MP_ARG_CONN : MP_ARG_OBJECT;
  a->u.o.t = type;
  a->u.o.obj = obj;
  args->n++;
  return 0;
}

/* ---- reading ------------------------------------------------------------------------ */

size_t mp_args_count(const mp_args *args) { return args ? args->n : 0; }

int mp_args_type(const mp_args *args, size_t i) {
  if (args == NULL || i >= args->n)
    return mp_set_error(MP_EINVAL, "mp_args_type: no argument %zu", i);
  return args->v[i].type;
}

static const mp_arg *get(const mp_args *args, size_t i, int type, const char *fn) {
  static const char *const names[] = {"nil", "bool",  "int",        "double",
                                      "str", "bytes", "connection", "object"};
  if (args == NULL || i >= args->n) {
    mp_set_error(MP_EINVAL, "%s: no argument %zu (there are %zu)", fn, i, args ? args->n : 0);
    return NULL;
  }
  if (args->v[i].type != type) {
    mp_set_error(MP_EINVAL, "%s: argument %zu is a %s, not a %s", fn, i, names[args->v[i].type],
                 names[type]);
    return NULL;
  }
  return &args->v[i];
}

int mp_args_get_bool(const mp_args *args, size_t i, int *value) {
  const mp_arg *a = get(args, i, MP_ARG_BOOL, "mp_args_get_bool");
  if (a == NULL || value == NULL)
    return a ? mp_set_error(MP_EINVAL, "mp_args_get_bool: value is NULL") : MP_EINVAL;
  *value = a->u.b;
  return 0;
}

int mp_args_get_int(const mp_args *args, size_t i, int64_t *value) {
  const mp_arg *a = get(args, i, MP_ARG_INT, "mp_args_get_int");
  if (a == NULL || value == NULL)
    return a ? mp_set_error(MP_EINVAL, "mp_args_get_int: value is NULL") : MP_EINVAL;
  *value = a->u.i;
  return 0;
}

int mp_args_get_double(const mp_args *args, size_t i, double *value) {
  const mp_arg *a = get(args, i, MP_ARG_DOUBLE, "mp_args_get_double");
  if (a == NULL || value == NULL)
    return a ? mp_set_error(MP_EINVAL, "mp_args_get_double: value is NULL") : MP_EINVAL;
  *value = a->u.d;
  return 0;
}

int mp_args_get_str(const mp_args *args, size_t i, const char **value, size_t *len) {
  const mp_arg *a = get(args, i, MP_ARG_STR, "mp_args_get_str");
  if (a == NULL || value == NULL)
    return a ? mp_set_error(MP_EINVAL, "mp_args_get_str: value is NULL") : MP_EINVAL;
  *value = a->u.s.p;
  if (len)
    *len = a->u.s.n;
  return 0;
}

int mp_args_get_bytes(const mp_args *args, size_t i, const void **data, size_t *len) {
  const mp_arg *a = get(args, i, MP_ARG_BYTES, "mp_args_get_bytes");
  if (a == NULL || data == NULL || len == NULL)
    return a ? mp_set_error(MP_EINVAL, "mp_args_get_bytes: data or len is NULL") : MP_EINVAL;
  *data = a->u.s.p;
  *len = a->u.s.n;
  return 0;
}

int mp__args_get_object(const mp_args *args, size_t i, const mp__xfer_type *type, void **obj) {
  int want = type->id == MP_XFER_CONN ? MP_ARG_CONN : MP_ARG_OBJECT;
  const mp_arg *a = get(args, i, want, "mp_args_get_object");
  if (a == NULL || obj == NULL)
    return a ? mp_set_error(MP_EINVAL, "mp_args_get_%s: out pointer is NULL", type->name)
             : MP_EINVAL;
  if (a->u.o.t != type)
    return mp_set_error(MP_EINVAL, "argument %zu is a %s, not a %s", i, a->u.o.t->name, type->name);
  *obj = a->u.o.obj;
  return 0;
}

int mp__args_copy(const mp_args *src, mp_args **out) {
  int rc = mp_args_create(out);
  if (rc || src == NULL)
    return rc;
  for (size_t i = 0; i < src->n && rc == 0; i++) {
    const mp_arg *a = &src->v[i];
    if (a->type == MP_ARG_STR || a->type == MP_ARG_BYTES) {
      rc = add_buffer(*out, a->type, a->u.s.p, a->u.s.n, "mp_args copy");
    } else {
      mp_arg *b = push(*out, "mp_args copy");
      if (b == NULL) {
        rc = mp_last_error_code();
        break;
      }
      *b = *a;
      b->u.o.imported = 0; /* the copy never owns an object */
      (*out)->n++;
    }
  }
  if (rc) {
    mp_args_free(*out);
    *out = NULL;
  }
  return rc;
}

/* ---- MessagePack form for spawned children ------------------------------------------ */

/* msgpack-c's packers return -1 only when the buffer cannot grow. */
#define PK(call) ((call) ? mp_set_error(MP_ENOMEM, "encoding arguments: out of memory") : 0)

/* An object's ext payload: [handle count][first handle index (u16 BE)][blob]. */
static int encode_object(msgpack_packer *pk, const mp_arg *a, mp_plat_handle *handles,
                         size_t *nhandles, size_t max) {
  mp__xfer x;
  memset(&x, 0, sizeof x);
  int rc = a->u.o.t->export_obj(a->u.o.obj, &x);
  if (rc)
    return rc;
  if (*nhandles + x.nhandles > max || x.blob_len > MP_XFER_MAX_BLOB)
    return mp_set_error(MP_EINVAL, "too many handles in the arguments (limit %zu)", max);
  unsigned char head[3] = {(unsigned char)x.nhandles, (unsigned char)(*nhandles >> 8),
                           (unsigned char)(*nhandles & 0xff)};
  for (size_t k = 0; k < x.nhandles; k++)
    handles[(*nhandles)++] = x.handles[k];
  return PK(msgpack_pack_ext(pk, sizeof head + x.blob_len, (int8_t)a->u.o.t->id) ||
            msgpack_pack_ext_body(pk, head, sizeof head) ||
            msgpack_pack_ext_body(pk, x.blob, x.blob_len));
}

static int encode_arg(msgpack_packer *pk, const mp_arg *a, mp_plat_handle *handles,
                      size_t *nhandles, size_t max) {
  switch (a->type) {
  case MP_ARG_NIL: return PK(msgpack_pack_nil(pk));
  case MP_ARG_BOOL: return PK(a->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
  case MP_ARG_INT: return PK(msgpack_pack_int64(pk, a->u.i));
  case MP_ARG_DOUBLE: return PK(msgpack_pack_double(pk, a->u.d));
  case MP_ARG_STR:
    return PK(msgpack_pack_str(pk, a->u.s.n) || msgpack_pack_str_body(pk, a->u.s.p, a->u.s.n));
  case MP_ARG_BYTES:
    return PK(msgpack_pack_bin(pk, a->u.s.n) || msgpack_pack_bin_body(pk, a->u.s.p, a->u.s.n));
  default: return encode_object(pk, a, handles, nhandles, max);
  }
}

int mp__args_encode(const mp_args *args, char **buf, size_t *len, mp_plat_handle *handles,
                    size_t *nhandles, size_t max) {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  size_t n = args ? args->n : 0;
  int rc = PK(msgpack_pack_array(&pk, n));
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = encode_arg(&pk, &args->v[i], handles, nhandles, max);
  if (rc) {
    msgpack_sbuffer_destroy(&sb);
    return rc;
  }
  *buf = sb.data; /* ownership passes to the caller; sbuffer allocates with malloc */
  *len = sb.size;
  return 0;
}

static int decode_object(mp_args *out, const msgpack_object_ext *e, const mp_plat_handle *handles,
                         size_t nhandles) {
  const mp__xfer_type *t = mp__xfer_lookup((uint8_t)e->type);
  if (t == NULL || e->size < 3 || e->size - 3 > MP_XFER_MAX_BLOB)
    return mp_set_error(MP_EPROTO, "arguments: unknown or malformed object (type %d)", e->type);
  const unsigned char *p = (const unsigned char *)e->ptr;
  size_t nh = p[0], first = ((size_t)p[1] << 8) | p[2];
  if (nh > MP_XFER_MAX_HANDLES || first + nh > nhandles)
    return mp_set_error(MP_EPROTO, "arguments: a %s names handles that were not sent", t->name);
  mp__xfer x;
  memset(&x, 0, sizeof x);
  x.nhandles = nh;
  for (size_t k = 0; k < nh; k++)
    x.handles[k] = handles[first + k];
  x.blob_len = e->size - 3;
  memcpy(x.blob, p + 3, x.blob_len);
  void *obj = NULL;
  int rc = t->import_obj(&x, &obj);
  if (rc)
    return rc;
  rc = mp__args_add_object(out, t, obj);
  if (rc) {
    t->release_imported(obj);
    return rc;
  }
  out->v[out->n - 1].u.o.imported = 1;
  return 0;
}

static int decode_arg(mp_args *out, const msgpack_object *o, const mp_plat_handle *handles,
                      size_t nhandles) {
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: return mp_args_add_nil(out);
  case MSGPACK_OBJECT_BOOLEAN: return mp_args_add_bool(out, o->via.boolean);
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
    if (o->via.u64 > INT64_MAX)
      return mp_set_error(MP_EPROTO, "arguments: integer out of range");
    return mp_args_add_int(out, (int64_t)o->via.u64);
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return mp_args_add_int(out, o->via.i64);
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return mp_args_add_double(out, o->via.f64);
  case MSGPACK_OBJECT_STR:
    return add_buffer(out, MP_ARG_STR, o->via.str.ptr, o->via.str.size, "arguments");
  case MSGPACK_OBJECT_BIN:
    return add_buffer(out, MP_ARG_BYTES, o->via.bin.ptr, o->via.bin.size, "arguments");
  case MSGPACK_OBJECT_EXT: return decode_object(out, &o->via.ext, handles, nhandles);
  default: return mp_set_error(MP_EPROTO, "arguments: unexpected MessagePack type %d", o->type);
  }
}

int mp__args_decode(const char *buf, size_t len, const mp_plat_handle *handles, size_t nhandles,
                    mp_args **out) {
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  int rc = 0;
  if (msgpack_unpack_next(&up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
      up.data.type != MSGPACK_OBJECT_ARRAY || off != len) {
    msgpack_unpacked_destroy(&up);
    return mp_set_error(MP_EPROTO, "arguments: not a MessagePack array");
  }
  rc = mp_args_create(out);
  for (uint32_t i = 0; rc == 0 && i < up.data.via.array.size; i++)
    rc = decode_arg(*out, &up.data.via.array.ptr[i], handles, nhandles);
  msgpack_unpacked_destroy(&up);
  if (rc && *out) {
    mp_args_free(*out);
    *out = NULL;
  }
  return rc;
}

int mp_args_add_conn(mp_args *args, mp_conn *conn) {
  return mp__args_add_object(args, &mp__conn_xfer, conn);
}

int mp_args_get_conn(const mp_args *args, size_t i, mp_conn **conn) {
  return mp__args_get_object(args, i, &mp__conn_xfer, (void **)conn);
}
