/* POSIX backend: closing and duplicating file descriptors. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "../platform.h"

void mp_plat_handle_close(mp_plat_handle h) {
  if (h == MP_PLAT_INVALID)
    return;
  /* Never retry close on EINTR: on Linux the fd is already released and could have been
   * reused by another thread. */
  (void)close((int)h);
}

int mp_plat_handle_dup(mp_plat_handle h, mp_plat_handle *out) {
  int fd = fcntl((int)h, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    return mp__os_error("fcntl(F_DUPFD_CLOEXEC)");
  *out = (mp_plat_handle)fd;
  return 0;
}
