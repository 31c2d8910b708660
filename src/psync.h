/* What tests need of the process-shared objects (psync.c). Not part of the public API. */
#ifndef MP_PSYNC_H
#define MP_PSYNC_H

#include "multiproc.h"

/* 1 once a waiter on e has announced that it sleeps, 0 before; MP_ENOTSUP where the
 * backend cannot tell (see mp_plat_pevent_sleepers). */
int mp__pevent_sleepers(mp_pevent *e);

#endif /* MP_PSYNC_H */
