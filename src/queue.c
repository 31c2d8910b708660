/* The public queue API, dispatching to an implementation: the local inter-process queue
 * or a manager's remote queue proxy. Arguments are checked here once for all of them. */
#include <stdlib.h>

#include "multiproc.h"
#include "queue.h"

struct mp_queue {
  const mp__queue_ops *ops;
  void *impl;
};

int mp__queue_wrap(mp_queue **q, const mp__queue_ops *ops, void *impl) {
  *q = malloc(sizeof **q);
  if (*q == NULL)
    return mp_set_error(MP_ENOMEM, "queue: out of memory");
  (*q)->ops = ops;
  (*q)->impl = impl;
  return 0;
}

void *mp__queue_impl(mp_queue *q, const mp__queue_ops *ops) {
  return q && q->ops == ops ? q->impl : NULL;
}

/* Checks q and that its implementation has the operation. */
#define CHECK(q, op, name)                                                                         \
  do {                                                                                             \
    if ((q) == NULL)                                                                               \
      return mp_set_error(MP_EINVAL, name ": queue is NULL");                                      \
    if ((q)->ops->op == NULL)                                                                      \
      return mp_set_error(MP_ENOTSUP, name " is not supported by a %s", (q)->ops->kind);           \
  } while (0)

int mp_queue_put(mp_queue *q, const void *buf, size_t len, int timeout_ms) {
  CHECK(q, put, "mp_queue_put");
  if (buf == NULL && len > 0)
    return mp_set_error(MP_EINVAL, "mp_queue_put: buf is NULL but len is %zu", len);
  return q->ops->put(q->impl, buf, len, timeout_ms);
}

int mp_queue_get(mp_queue *q, void **buf, size_t *len, int timeout_ms) {
  CHECK(q, get, "mp_queue_get");
  if (buf == NULL || len == NULL)
    return mp_set_error(MP_EINVAL, "mp_queue_get: buf or len is NULL");
  return q->ops->get(q->impl, buf, len, timeout_ms);
}

/* An implementation without its own value calls carries a value as its MessagePack
 * encoding through put and get. */
int mp_queue_put_value(mp_queue *q, const mp_value *v, int timeout_ms) {
  CHECK(q, put, "mp_queue_put_value");
  if (v == NULL)
    return mp_set_error(MP_EINVAL, "mp_queue_put_value: value is NULL");
  if (q->ops->put_value)
    return q->ops->put_value(q->impl, v, timeout_ms);
  void *buf;
  size_t len;
  int rc = mp_value_encode(v, &buf, &len);
  if (rc == 0) {
    rc = q->ops->put(q->impl, buf, len, timeout_ms);
    mp_free(buf);
  }
  return rc;
}

int mp_queue_get_value(mp_queue *q, mp_value **v, int timeout_ms) {
  CHECK(q, get, "mp_queue_get_value");
  if (v == NULL)
    return mp_set_error(MP_EINVAL, "mp_queue_get_value: v is NULL");
  if (q->ops->get_value)
    return q->ops->get_value(q->impl, v, timeout_ms);
  void *buf = NULL;
  size_t len = 0;
  int rc = q->ops->get(q->impl, &buf, &len, timeout_ms);
  if (rc == 0) {
    rc = mp_value_decode(buf, len, v);
    mp_free(buf);
  }
  return rc;
}

int mp_queue_qsize(mp_queue *q, size_t *n) {
  CHECK(q, qsize, "mp_queue_qsize");
  if (n == NULL)
    return mp_set_error(MP_EINVAL, "mp_queue_qsize: n is NULL");
  return q->ops->qsize(q->impl, n);
}

int mp_queue_empty(mp_queue *q) {
  CHECK(q, empty, "mp_queue_empty");
  return q->ops->empty(q->impl);
}

int mp_queue_full(mp_queue *q) {
  CHECK(q, full, "mp_queue_full");
  return q->ops->full(q->impl);
}

int mp_queue_close(mp_queue *q) {
  CHECK(q, close, "mp_queue_close");
  return q->ops->close(q->impl);
}

int mp_queue_task_done(mp_queue *q) {
  CHECK(q, task_done, "mp_queue_task_done");
  return q->ops->task_done(q->impl);
}

int mp_queue_join(mp_queue *q, int timeout_ms) {
  CHECK(q, join, "mp_queue_join");
  return q->ops->join(q->impl, timeout_ms);
}

int mp_queue_flush(mp_queue *q, int timeout_ms) {
  if (q == NULL)
    return mp_set_error(MP_EINVAL, "mp_queue_flush: queue is NULL");
  if (timeout_ms < MP_FOREVER)
    return mp_set_error(MP_EINVAL, "mp_queue_flush: timeout %d ms", timeout_ms);
  return q->ops->flush ? q->ops->flush(q->impl, timeout_ms) : 0;
}

void mp_queue_free(mp_queue *q) {
  if (q == NULL)
    return;
  if (q->ops->free)
    q->ops->free(q->impl);
  free(q);
}
