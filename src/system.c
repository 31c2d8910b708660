/* Version and the thin public wrappers over the backend's system functions. */
#include "platform.h"

#define MP_STR2(x) #x
#define MP_STR(x) MP_STR2(x)

const char *mp_version(void) {
  return MP_STR(MP_VERSION_MAJOR) "." MP_STR(MP_VERSION_MINOR) "." MP_STR(MP_VERSION_PATCH);
}

int64_t mp_getpid(void) { return mp_plat_getpid(); }

uint64_t mp_monotonic_ns(void) { return mp_plat_monotonic_ns(); }

int mp_random_bytes(void *buf, size_t len) {
  if (buf == NULL && len > 0)
    return mp_set_error(MP_EINVAL, "mp_random_bytes: buf is NULL");
  return mp_plat_random_bytes(buf, len);
}
