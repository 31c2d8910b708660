/* TEMPORARY (feat-conn branch only): process.c does not exist on this branch yet, so this
 * stands in for mp__process_wait_handle to let mp_wait link. The integrator deletes this
 * file when merging the Process work, whose process.c defines the real function. */
#include "internal.h"

mp_plat_handle mp__process_wait_handle(mp_process *p) {
  (void)p;
  return MP_PLAT_INVALID;
}
