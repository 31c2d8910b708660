/* POSIX backend: thread-local slots are pthread keys, whose destructors run at every
 * thread's exit, whoever started the thread. */
#include <pthread.h>

#include "../platform.h"

int mp_plat_tls_create(uint64_t *key, void (*dtor)(void *)) {
  pthread_key_t k;
  int err = pthread_key_create(&k, dtor);
  if (err != 0)
    return mp__os_error_code(MP_ENOMEM, err, "pthread_key_create");
  *key = (uint64_t)k;
  return 0;
}

void mp_plat_tls_free(uint64_t key) { pthread_key_delete((pthread_key_t)key); }

int mp_plat_tls_set(uint64_t key, void *value) {
  int err = pthread_setspecific((pthread_key_t)key, value);
  return err == 0 ? 0 : mp__os_error_code(MP_ENOMEM, err, "pthread_setspecific");
}

void *mp_plat_tls_get(uint64_t key) { return pthread_getspecific((pthread_key_t)key); }
