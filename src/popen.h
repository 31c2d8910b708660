/* What the rest of the library needs of subprocesses (popen.c). Not part of the public API. */
#ifndef MP_POPEN_H
#define MP_POPEN_H

#include "multiproc.h"

/* Reaps every finished child of mp_popen that was freed while still running; mp_shutdown
 * calls it. Never blocks. */
void mp__popen_reap_all(void);

/* Tests only (POSIX): closes the child's pidfd so that timed waits take the path of kernels
 * without pidfds. */
void mp__popen_drop_wait_handle(mp_popen *p);

#endif /* MP_POPEN_H */
