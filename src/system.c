/* Version and the thin public wrappers over the backend's system functions. */
#include "platform.h"

const char *mp_version(void) { return MP_VERSION_STRING; }

int64_t mp_getpid(void) { return mp_plat_getpid(); }

uint64_t mp_monotonic_ns(void) { return mp_plat_monotonic_ns(); }

int mp_random_bytes(void *buf, size_t len) {
  if (buf == NULL && len > 0)
    return mp_set_error(MP_EINVAL, "mp_random_bytes: buf is NULL");
  return mp_plat_random_bytes(buf, len);
}

void mp_sleep_ms(int ms) {
  if (ms > 0)
    mp_plat_sleep_ms(ms);
}
