/* The manager's wire helpers (manager_wire.c) and served queues (manager_queue.c).
 * Not part of the public API. */
#ifndef MP_MANAGER_H
#define MP_MANAGER_H

#include <stddef.h>

#include "multiproc.h"

/* A copy of an authkey (any bytes, NUL-terminated for convenience) and its release, which
 * zeroes the copy before freeing it. */
int mp__key_dup(const void *key, size_t len, char **out);
void mp__key_free(char *key, size_t len);
/* Splits "host:port" (IPv4 or name; "" or "0.0.0.0" host: all interfaces). */
int mp__split_address(const char *address, char *host, size_t hostsize, int *port);

/* The queue a manager serves (manager_queue.c). put takes v on success; get's alive(arg)
 * (may be NULL) says whether the client it serves is still there: MP_EBROKEN if not. */
typedef struct mp__squeue mp__squeue;
int mp__squeue_create(mp__squeue **q, size_t maxsize);
void mp__squeue_free(mp__squeue *q);
int mp__squeue_put(mp__squeue *q, mp_value *v, int timeout_ms);
int mp__squeue_get(mp__squeue *q, mp_value **v, int timeout_ms, int (*alive)(void *), void *arg);
/* Puts an item back at the front (a reply that could not be delivered). */
void mp__squeue_unget(mp__squeue *q, mp_value *v);
size_t mp__squeue_qsize(mp__squeue *q);
size_t mp__squeue_maxsize(const mp__squeue *q);
/* How many gets are blocked on q now. */
size_t mp__squeue_waiters(mp__squeue *q);
/* Tests: the number of gets blocked on the queue registered as name (0 if unknown). */
size_t mp__manager_waiters(mp_manager *m, const char *name);
int mp__squeue_task_done(mp__squeue *q);
int mp__squeue_join(mp__squeue *q, int timeout_ms);
/* Wakes every waiter with MP_ECLOSED; later calls fail the same way. */
void mp__squeue_close(mp__squeue *q);
/* A public queue handle onto q that does not own it. */
int mp__squeue_local(mp__squeue *q, mp_queue **out);
/* Frees v and returns its bytes (a bytes value) or its MessagePack encoding (other). */
int mp__value_to_bytes(mp_value *v, void **buf, size_t *len);

#endif /* MP_MANAGER_H */
