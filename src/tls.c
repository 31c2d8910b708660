/* Thread-local slots: one attribute of Python's threading.local(), with a destructor that
 * runs for each thread's value when that thread exits. */
#include <stdlib.h>

#include "platform.h"

struct mp_tls {
  uint64_t key;
};

int mp_tls_create(mp_tls **out, mp_tls_dtor dtor) {
  if (out == NULL)
    return mp_set_error(MP_EINVAL, "mp_tls_create: the output pointer is NULL");
  mp_tls *k = malloc(sizeof *k);
  if (k == NULL)
    return mp_set_error(MP_ENOMEM, "mp_tls_create: out of memory");
  int rc = mp_plat_tls_create(&k->key, dtor);
  if (rc != 0) {
    free(k);
    return rc;
  }
  *out = k;
  return 0;
}

int mp_tls_set(mp_tls *k, void *value) {
  if (k == NULL)
    return mp_set_error(MP_EINVAL, "mp_tls_set: the slot is NULL");
  return mp_plat_tls_set(k->key, value);
}

void *mp_tls_get(mp_tls *k) { return k == NULL ? NULL : mp_plat_tls_get(k->key); }

void mp_tls_free(mp_tls *k) {
  if (k == NULL)
    return;
  mp_plat_tls_free(k->key);
  free(k);
}
