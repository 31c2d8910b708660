/* mp_wait: block until any of several connections and processes is ready, like
 * multiprocessing.connection.wait. The backend's mp_plat_wait_many does the waiting. */
#include <stdlib.h>

#include "connection.h"
#include "proc.h"
#include "platform.h"

mp_waitable mp_waitable_conn(mp_conn *conn) {
  mp_waitable w = {0};
  w.kind = MP_WAIT_CONN;
  w.u.conn = conn;
  return w;
}

mp_waitable mp_waitable_process(mp_process *process) {
  mp_waitable w = {0};
  w.kind = MP_WAIT_PROCESS;
  w.u.process = process;
  return w;
}

/* Fills src from obj (index i, for messages). */
static int to_source(const mp_waitable *obj, size_t i, mp_plat_waitsrc *src) {
  src->chan = NULL;
  src->proc = MP_PLAT_INVALID;
  src->ready = 0;
  if (obj->kind == MP_WAIT_CONN) {
    if (obj->u.conn == NULL)
      return mp_set_error(MP_EINVAL, "mp_wait: object %d: connection is NULL", (int)i);
    if (mp__conn_chan(obj->u.conn) == NULL)
      return mp_set_error(MP_ECLOSED, "mp_wait: object %d: connection is closed", (int)i);
    if (!mp_conn_readable(obj->u.conn))
      return mp_set_error(MP_EINVAL, "mp_wait: object %d: connection is write-only", (int)i);
    src->chan = mp__conn_chan(obj->u.conn);
    return 0;
  }
  if (obj->kind == MP_WAIT_PROCESS) {
    if (obj->u.process == NULL)
      return mp_set_error(MP_EINVAL, "mp_wait: object %d: process is NULL", (int)i);
    src->proc = mp__process_wait_handle(obj->u.process);
    if (src->proc == MP_PLAT_INVALID)
      return mp_set_error(MP_ESTATE, "mp_wait: object %d: process was not started", (int)i);
    return 0;
  }
  return mp_set_error(MP_EINVAL, "mp_wait: object %d has unknown kind %d", (int)i, obj->kind);
}

int mp_wait(mp_waitable *objs, size_t n, int timeout_ms) {
  if (objs == NULL || n == 0)
    return mp_set_error(MP_EINVAL, "mp_wait: no objects to wait on");
  mp_plat_waitsrc *srcs = malloc(n * sizeof *srcs);
  if (srcs == NULL)
    return mp_set_error(MP_ENOMEM, "mp_wait: out of memory for %llu objects",
                        (unsigned long long)n);
  int rc = 0, buffered = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    objs[i].ready = 0;
    rc = to_source(&objs[i], i, &srcs[i]);
    buffered += objs[i].kind == MP_WAIT_CONN && mp__conn_buffered(objs[i].u.conn);
  }
  /* A message already read ahead is ready now: look at the rest without waiting. */
  if (rc == 0)
    rc = mp_plat_wait_many(srcs, n, buffered ? 0 : timeout_ms);
  if (rc == MP_ETIMEDOUT && buffered)
    rc = 0;
  for (size_t i = 0; rc >= 0 && i < n; i++) {
    objs[i].ready =
        srcs[i].ready || (objs[i].kind == MP_WAIT_CONN && mp__conn_buffered(objs[i].u.conn));
    rc += rc >= 0 && buffered && objs[i].ready && !srcs[i].ready;
  }
  free(srcs);
  return rc;
}
