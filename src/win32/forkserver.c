/* Win32 backend of the fork server: Windows has no fork, so there is none. The start method
 * is refused before it gets here (process.c: MP_ENOTSUP); these keep the contract. */
#include "../platform.h"

#define NO_FORK                                                                                    \
  "the forkserver start method needs fork(), which Windows does not have; use "                    \
  "MP_START_SPAWN"

int mp_plat_forkserver_fork(mp_plat_handle ctl, const mp_plat_child_spec *spec, int timeout_ms,
                            mp_plat_child *c) {
  (void)ctl, (void)spec, (void)timeout_ms, (void)c;
  return mp_set_error(MP_ENOTSUP, NO_FORK);
}

int mp_plat_forkserver_serve(mp_plat_handle ctl, int64_t client,
                             void (*child_fn)(int64_t client, int64_t boot)) {
  (void)ctl, (void)client, (void)child_fn;
  return mp_set_error(MP_ENOTSUP, NO_FORK);
}
