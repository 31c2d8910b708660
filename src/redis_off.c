/* Redis-backed queues in a build without hiredis (MP_WITH_REDIS=OFF, or hiredis not
 * found): the calls exist, so programs link the same way, and say why they cannot work. */
#include "multiproc.h"

static int unsupported(const char *call) {
  return mp_set_error(MP_ENOTSUP,
                      "%s: this multiproc was built without Redis support (hiredis >= 1.0 was "
                      "not found; see MP_WITH_REDIS in docs/redis.md)",
                      call);
}

int mp_redis_queue_create(mp_queue **q, const char *url, const char *name,
                          const mp_redis_opts *opts) {
  (void)url, (void)name, (void)opts;
  if (q)
    *q = NULL;
  return unsupported("mp_redis_queue_create");
}

int mp_redis_queue_delete(const char *url, const char *name, int timeout_ms) {
  (void)url, (void)name, (void)timeout_ms;
  return unsupported("mp_redis_queue_delete");
}

int mp_redis_pool_create(mp_pool **pool, const char *url, const char *name,
                         const mp_redis_pool_opts *opts) {
  (void)url, (void)name, (void)opts;
  if (pool)
    *pool = NULL;
  return unsupported("mp_redis_pool_create");
}

int mp_worker_serve(const char *url, const char *name, const mp_worker_opts *opts) {
  (void)url, (void)name, (void)opts;
  return unsupported("mp_worker_serve");
}
