/* Process-shared Lock, Semaphore and Event, in the manner of multiprocessing's: fork
 * children use them as they are; spawned children receive them through mp_args (the xfer
 * types below), importing the one OS handle each object is made of. */
#include <stdlib.h>

#include "xfer.h"
#include "deadline.h"
#include "psync.h"
#include "platform.h"

struct mp_plock {
  mp_plat_plock *p;
};
struct mp_psem {
  mp_plat_psem *p;
};
struct mp_pevent {
  mp_plat_pevent *p;
};

#define CHECK(p, what)                                                                             \
  do {                                                                                             \
    if ((p) == NULL)                                                                               \
      return mp_set_error(MP_EINVAL, "%s: %s is NULL", what, #p);                                  \
  } while (0)

/* The public records are one pointer each; this allocates one before the backend object
 * is made, so that nothing can fail after an import took over the child's handle. */
static void *box_new(size_t size) {
  void *box = malloc(size);
  if (box == NULL)
    mp_set_error(MP_ENOMEM, "process-shared object: out of memory");
  return box;
}

/* ---- Lock ------------------------------------------------------------------------- */

int mp_plock_create(mp_plock **l) {
  CHECK(l, "mp_plock_create");
  mp_plock *box = box_new(sizeof *box);
  int rc = box ? mp_plat_plock_create(&box->p) : MP_ENOMEM;
  if (rc != 0)
    free(box);
  else
    *l = box;
  return rc;
}

int mp_plock_acquire(mp_plock *l, int timeout_ms) {
  CHECK(l, "mp_plock_acquire");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  return rc != 0 ? rc : mp_plat_plock_acquire(l->p, deadline);
}

int mp_plock_release(mp_plock *l) {
  CHECK(l, "mp_plock_release");
  return mp_plat_plock_release(l->p);
}

void mp_plock_free(mp_plock *l) {
  if (l == NULL)
    return;
  mp_plat_plock_free(l->p);
  free(l);
}

/* ---- Semaphore -------------------------------------------------------------------- */

int mp_psem_create(mp_psem **s, unsigned value, unsigned maxvalue) {
  CHECK(s, "mp_psem_create");
  if (maxvalue != MP_SEM_UNBOUNDED && value > maxvalue)
    return mp_set_error(MP_EINVAL, "mp_psem_create: value %u exceeds maxvalue %u", value, maxvalue);
  mp_psem *box = box_new(sizeof *box);
  int rc = box ? mp_plat_psem_create(&box->p, value, maxvalue) : MP_ENOMEM;
  if (rc != 0)
    free(box);
  else
    *s = box;
  return rc;
}

int mp_psem_acquire(mp_psem *s, int timeout_ms) {
  CHECK(s, "mp_psem_acquire");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  return rc != 0 ? rc : mp_plat_psem_acquire(s->p, deadline);
}

int mp_psem_release(mp_psem *s) {
  CHECK(s, "mp_psem_release");
  return mp_plat_psem_release(s->p);
}

int mp_psem_get_value(mp_psem *s, unsigned *value) {
  CHECK(s, "mp_psem_get_value");
  CHECK(value, "mp_psem_get_value");
  return mp_plat_psem_value(s->p, value);
}

void mp_psem_free(mp_psem *s) {
  if (s == NULL)
    return;
  mp_plat_psem_free(s->p);
  free(s);
}

/* ---- Event ------------------------------------------------------------------------ */

int mp_pevent_create(mp_pevent **e) {
  CHECK(e, "mp_pevent_create");
  mp_pevent *box = box_new(sizeof *box);
  int rc = box ? mp_plat_pevent_create(&box->p) : MP_ENOMEM;
  if (rc != 0)
    free(box);
  else
    *e = box;
  return rc;
}

int mp_pevent_set(mp_pevent *e) {
  CHECK(e, "mp_pevent_set");
  return mp_plat_pevent_set(e->p);
}

int mp_pevent_clear(mp_pevent *e) {
  CHECK(e, "mp_pevent_clear");
  return mp_plat_pevent_clear(e->p);
}

int mp_pevent_is_set(mp_pevent *e) {
  CHECK(e, "mp_pevent_is_set");
  return mp_plat_pevent_is_set(e->p);
}

int mp_pevent_wait(mp_pevent *e, int timeout_ms) {
  CHECK(e, "mp_pevent_wait");
  int64_t deadline = -1;
  int rc = mp__deadline_ns(timeout_ms, &deadline);
  return rc != 0 ? rc : mp_plat_pevent_wait(e->p, deadline);
}

int mp__pevent_sleepers(mp_pevent *e) { return mp_plat_pevent_sleepers(e->p); }

void mp_pevent_free(mp_pevent *e) {
  if (e == NULL)
    return;
  mp_plat_pevent_free(e->p);
  free(e);
}

/* ---- passing to a spawned child: one handle each, no blob ----------------------------- */

static int export_one(mp_plat_handle h, mp__xfer *out) {
  out->blob_len = 0;
  out->nhandles = 1;
  out->handles[0] = h;
  return 0;
}

/* Imports consume the child's handles: on any failure they are closed here or by the
 * backend, so the caller never has to. */
static int check_one(const mp__xfer *in, const char *what) {
  if (in->nhandles != 1 || in->blob_len != 0) {
    for (size_t i = 0; i < in->nhandles && i < MP_XFER_MAX_HANDLES; i++)
      mp_plat_handle_close(in->handles[i]);
    return mp_set_error(MP_EPROTO, "%s: expected 1 handle and no data, got %lu and %lu bytes", what,
                        (unsigned long)in->nhandles, (unsigned long)in->blob_len);
  }
  return 0;
}

static int plock_export(void *obj, mp__xfer *out) {
  return export_one(mp_plat_plock_handle(((mp_plock *)obj)->p), out);
}
static int plock_import(const mp__xfer *in, void **obj) {
  int rc = check_one(in, "mp_plock import");
  mp_plock *box = rc == 0 ? box_new(sizeof *box) : NULL;
  if (rc == 0 && box == NULL) {
    mp_plat_handle_close(in->handles[0]);
    rc = MP_ENOMEM;
  }
  if (rc == 0 && (rc = mp_plat_plock_import(&box->p, in->handles[0])) == 0)
    *obj = box;
  else
    free(box);
  return rc;
}
static void plock_release(void *obj) { mp_plock_free(obj); }

static int psem_export(void *obj, mp__xfer *out) {
  return export_one(mp_plat_psem_handle(((mp_psem *)obj)->p), out);
}
static int psem_import(const mp__xfer *in, void **obj) {
  int rc = check_one(in, "mp_psem import");
  mp_psem *box = rc == 0 ? box_new(sizeof *box) : NULL;
  if (rc == 0 && box == NULL) {
    mp_plat_handle_close(in->handles[0]);
    rc = MP_ENOMEM;
  }
  if (rc == 0 && (rc = mp_plat_psem_import(&box->p, in->handles[0])) == 0)
    *obj = box;
  else
    free(box);
  return rc;
}
static void psem_release(void *obj) { mp_psem_free(obj); }

static int pevent_export(void *obj, mp__xfer *out) {
  return export_one(mp_plat_pevent_handle(((mp_pevent *)obj)->p), out);
}
static int pevent_import(const mp__xfer *in, void **obj) {
  int rc = check_one(in, "mp_pevent import");
  mp_pevent *box = rc == 0 ? box_new(sizeof *box) : NULL;
  if (rc == 0 && box == NULL) {
    mp_plat_handle_close(in->handles[0]);
    rc = MP_ENOMEM;
  }
  if (rc == 0 && (rc = mp_plat_pevent_import(&box->p, in->handles[0])) == 0)
    *obj = box;
  else
    free(box);
  return rc;
}
static void pevent_release(void *obj) { mp_pevent_free(obj); }

const mp__xfer_type mp__plock_xfer = {MP_XFER_PLOCK, "process-shared lock", plock_export,
                                      plock_import, plock_release};
const mp__xfer_type mp__psem_xfer = {MP_XFER_PSEM, "process-shared semaphore", psem_export,
                                     psem_import, psem_release};
const mp__xfer_type mp__pevent_xfer = {MP_XFER_PEVENT, "process-shared event", pevent_export,
                                       pevent_import, pevent_release};
