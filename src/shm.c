/* Anonymous shared memory (mp_shm) and, on top of it, multiprocessing's Value and Array
 * (mp_shared): typed elements in shared memory guarded by their own process-shared lock. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "xfer.h"
#include "platform.h"

struct mp_shm {
  mp_plat_shm *p;
  size_t size;
};

/* Imports consume the child's handles: closed on failure too. */
static void close_all(const mp__xfer *in) {
  for (size_t i = 0; i < in->nhandles && i < MP_XFER_MAX_HANDLES; i++)
    mp_plat_handle_close(in->handles[i]);
}

static int shm_open_box(mp_shm **out, size_t size, mp_plat_handle h) {
  mp_shm *m = malloc(sizeof *m);
  if (m == NULL) {
    mp_plat_handle_close(h);
    return mp_set_error(MP_ENOMEM, "mp_shm: out of memory");
  }
  int rc =
      h == MP_PLAT_INVALID ? mp_plat_shm_create(&m->p, size) : mp_plat_shm_import(&m->p, h, size);
  if (rc != 0) {
    free(m);
    return rc;
  }
  m->size = size;
  *out = m;
  return 0;
}

int mp_shm_create(mp_shm **m, size_t size) {
  if (m == NULL || size == 0)
    return mp_set_error(MP_EINVAL, "mp_shm_create: %s", m ? "size is 0" : "m is NULL");
  return shm_open_box(m, size, MP_PLAT_INVALID);
}

int mp_shm_map(mp_shm *m, void **addr, size_t *size) {
  if (m == NULL)
    return mp_set_error(MP_EINVAL, "mp_shm_map: m is NULL");
  if (addr)
    *addr = mp_plat_shm_addr(m->p);
  if (size)
    *size = m->size;
  return 0;
}

void mp_shm_free(mp_shm *m) {
  if (m == NULL)
    return;
  mp_plat_shm_free(m->p);
  free(m);
}

/* The blob is the size as 8 little-endian bytes, the handle the mapping. */
static void put_u64(unsigned char *b, uint64_t v) {
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *b) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)b[i] << (8 * i);
  return v;
}

static int shm_export(void *obj, mp__xfer *out) {
  mp_shm *m = obj;
  put_u64(out->blob, m->size);
  out->blob_len = 8;
  out->handles[0] = mp_plat_shm_handle(m->p);
  out->nhandles = 1;
  return 0;
}

static int shm_import(const mp__xfer *in, void **obj) {
  uint64_t size = in->blob_len == 8 ? get_u64(in->blob) : 0;
  if (in->nhandles != 1 || size == 0 || size > (uint64_t)SIZE_MAX) {
    close_all(in);
    return mp_set_error(MP_EPROTO, "mp_shm import: expected 1 handle and a size");
  }
  mp_shm *m = NULL;
  int rc = shm_open_box(&m, (size_t)size, in->handles[0]);
  if (rc == 0)
    *obj = m;
  return rc;
}

static void shm_release(void *obj) { mp_shm_free(obj); }

const mp__xfer_type mp__shm_xfer = {MP_XFER_SHM, "shared memory", shm_export, shm_import,
                                    shm_release};

/* ---- Value / Array ---------------------------------------------------------------- */

struct mp_shared {
  mp_shm *shm;
  mp_plock *lock;
  mp_shared_type type;
  size_t n;
};

int mp_shared_create(mp_shared **out, mp_shared_type type, size_t n) {
  if (out == NULL || n == 0 || (type != MP_SHARED_INT64 && type != MP_SHARED_DOUBLE) ||
      n > SIZE_MAX / 8)
    return mp_set_error(MP_EINVAL, "mp_shared_create: %s",
                        out == NULL ? "s is NULL"
                        : n == 0    ? "n is 0"
                                    : "bad type or length");
  mp_shared *s = calloc(1, sizeof *s);
  if (s == NULL)
    return mp_set_error(MP_ENOMEM, "mp_shared_create: out of memory");
  int rc = mp_shm_create(&s->shm, n * 8);
  if (rc == 0 && (rc = mp_plock_create(&s->lock)) != 0)
    mp_shm_free(s->shm);
  if (rc != 0) {
    free(s);
    return rc;
  }
  s->type = type;
  s->n = n;
  *out = s;
  return 0;
}

mp_shared_type mp_shared_kind(const mp_shared *s) { return s ? s->type : (mp_shared_type)0; }

size_t mp_shared_len(const mp_shared *s) { return s ? s->n : 0; }

void *mp_shared_data(mp_shared *s) {
  void *addr = NULL;
  if (s != NULL)
    mp_shm_map(s->shm, &addr, NULL);
  return addr;
}

mp_plock *mp_shared_lock(mp_shared *s) { return s ? s->lock : NULL; }

/* Checks the call and takes the lock. A holder that died inside a helper below left each
 * element either old or new (one untorn 8-byte store), so carry on, as multiprocessing
 * would; what a user's own critical section left is the user's to judge (MP_EOWNERDEAD). */
static int shared_enter(mp_shared *s, size_t i, mp_shared_type type, const char *what) {
  if (s == NULL)
    return mp_set_error(MP_EINVAL, "%s: s is NULL", what);
  if (s->type != type)
    return mp_set_error(MP_EINVAL, "%s: the elements are %s", what,
                        s->type == MP_SHARED_INT64 ? "int64" : "double");
  if (i >= s->n)
    return mp_set_error(MP_EINVAL, "%s: index %lu is out of range (length %lu)", what,
                        (unsigned long)i, (unsigned long)s->n);
  int rc = mp_plock_acquire(s->lock, MP_FOREVER);
  return rc == MP_EOWNERDEAD ? 0 : rc;
}

/* Reads, writes (set) or adds to element i under the lock; stores the new value. */
static int shared_int(mp_shared *s, size_t i, int set, int64_t v, int64_t *result,
                      const char *what) {
  int rc = shared_enter(s, i, MP_SHARED_INT64, what);
  if (rc != 0)
    return rc;
  _Atomic int64_t *e = (_Atomic int64_t *)mp_shared_data(s) + i;
  /* Wraps around like Python's ctypes c_int64 instead of overflowing. */
  int64_t now = atomic_load_explicit(e, memory_order_relaxed);
  now = set ? v : (int64_t)((uint64_t)now + (uint64_t)v);
  atomic_store_explicit(e, now, memory_order_relaxed);
  if (result)
    *result = now;
  return mp_plock_release(s->lock);
}

static int shared_double(mp_shared *s, size_t i, int set, double v, double *result,
                         const char *what) {
  int rc = shared_enter(s, i, MP_SHARED_DOUBLE, what);
  if (rc != 0)
    return rc;
  _Atomic double *e = (_Atomic double *)mp_shared_data(s) + i;
  double now = atomic_load_explicit(e, memory_order_relaxed);
  now = set ? v : now + v;
  atomic_store_explicit(e, now, memory_order_relaxed);
  if (result)
    *result = now;
  return mp_plock_release(s->lock);
}

int mp_shared_get_int(mp_shared *s, size_t i, int64_t *value) {
  if (value == NULL)
    return mp_set_error(MP_EINVAL, "mp_shared_get_int: value is NULL");
  return shared_int(s, i, 0, 0, value, "mp_shared_get_int");
}

int mp_shared_get_double(mp_shared *s, size_t i, double *value) {
  if (value == NULL)
    return mp_set_error(MP_EINVAL, "mp_shared_get_double: value is NULL");
  return shared_double(s, i, 0, 0, value, "mp_shared_get_double");
}

int mp_shared_set_int(mp_shared *s, size_t i, int64_t value) {
  return shared_int(s, i, 1, value, NULL, "mp_shared_set_int");
}

int mp_shared_set_double(mp_shared *s, size_t i, double value) {
  return shared_double(s, i, 1, value, NULL, "mp_shared_set_double");
}

int mp_shared_add_int(mp_shared *s, size_t i, int64_t delta, int64_t *result) {
  return shared_int(s, i, 0, delta, result, "mp_shared_add_int");
}

int mp_shared_add_double(mp_shared *s, size_t i, double delta, double *result) {
  return shared_double(s, i, 0, delta, result, "mp_shared_add_double");
}

void mp_shared_free(mp_shared *s) {
  if (s == NULL)
    return;
  mp_plock_free(s->lock);
  mp_shm_free(s->shm);
  free(s);
}

/* The blob: type (1 byte) and length (8 bytes); the handles: the memory, then the lock. */
static int shared_export(void *obj, mp__xfer *out) {
  mp_shared *s = obj;
  mp__xfer part;
  int rc = mp__shm_xfer.export_obj(s->shm, &part);
  if (rc != 0)
    return rc;
  out->handles[0] = part.handles[0];
  if ((rc = mp__plock_xfer.export_obj(s->lock, &part)) != 0)
    return rc;
  out->handles[1] = part.handles[0];
  out->nhandles = 2;
  out->blob[0] = (unsigned char)s->type;
  put_u64(out->blob + 1, s->n);
  out->blob_len = 9;
  return 0;
}

static int shared_import(const mp__xfer *in, void **obj) {
  uint64_t n = in->blob_len == 9 ? get_u64(in->blob + 1) : 0;
  mp_shared_type type = (mp_shared_type)in->blob[0];
  mp_shared *s = NULL;
  if (in->nhandles != 2 || (type != MP_SHARED_INT64 && type != MP_SHARED_DOUBLE) || n == 0 ||
      n > SIZE_MAX / 8 || (s = calloc(1, sizeof *s)) == NULL) {
    close_all(in);
    return s == NULL && in->nhandles == 2 && n > 0 && n <= SIZE_MAX / 8
               ? mp_set_error(MP_ENOMEM, "mp_shared import: out of memory")
               : mp_set_error(MP_EPROTO, "mp_shared import: expected 2 handles, type, length");
  }
  mp__xfer part = {.blob_len = 8, .nhandles = 1};
  part.handles[0] = in->handles[0];
  put_u64(part.blob, n * 8);
  void *shm = NULL, *lock = NULL;
  int rc = shm_import(&part, &shm);
  if (rc != 0) {
    mp_plat_handle_close(in->handles[1]);
  } else {
    part.blob_len = 0;
    part.handles[0] = in->handles[1];
    if ((rc = mp__plock_xfer.import_obj(&part, &lock)) != 0)
      mp_shm_free(shm);
  }
  if (rc != 0) {
    free(s);
    return rc;
  }
  s->shm = shm;
  s->lock = lock;
  s->type = type;
  s->n = (size_t)n;
  *obj = s;
  return 0;
}

static void shared_release(void *obj) { mp_shared_free(obj); }

const mp__xfer_type mp__shared_xfer = {MP_XFER_SHARED, "shared value", shared_export, shared_import,
                                       shared_release};
