/* One public queue API over several implementations (queue.c). Not part of the public API. */
#ifndef MP_QUEUE_H
#define MP_QUEUE_H

#include <stddef.h>

#include "multiproc.h"

/* What a queue implementation provides: the local inter-process queue and the manager's
 * remote proxy both plug in here. Every function gets the impl pointer given to
 * mp__queue_wrap. Any entry may be NULL: the call then fails with MP_ENOTSUP, except
 * put_value/get_value (the value's MessagePack encoding goes through put/get instead) and
 * flush (nothing to confirm: 0). */
typedef struct mp__queue_ops {
  const char *kind; /* for messages: "queue", "remote queue" */
  int (*put)(void *impl, const void *buf, size_t len, int timeout_ms);
  int (*get)(void *impl, void **buf, size_t *len, int timeout_ms);
  int (*put_value)(void *impl, const mp_value *v, int timeout_ms);
  int (*get_value)(void *impl, mp_value **v, int timeout_ms);
  int (*qsize)(void *impl, size_t *n);
  int (*empty)(void *impl);
  int (*full)(void *impl);
  int (*close)(void *impl);
  int (*task_done)(void *impl);
  int (*join)(void *impl, int timeout_ms);
  void (*free)(void *impl);
  /* Confirms operations the implementation sent without waiting (NULL: none ever are). */
  int (*flush)(void *impl, int timeout_ms);
} mp__queue_ops;

/* Makes a public queue object over an implementation (which it frees with ops->free). */
int mp__queue_wrap(mp_queue **q, const mp__queue_ops *ops, void *impl);
/* The implementation behind a queue if it has the given ops, else NULL. */
void *mp__queue_impl(mp_queue *q, const mp__queue_ops *ops);

#endif /* MP_QUEUE_H */
