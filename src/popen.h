/* What the rest of the library needs of subprocesses (popen.c). Not part of the public API:
 * nothing today; the reap-later registry that mp_shutdown drives is in child.h. */
#ifndef MP_POPEN_H
#define MP_POPEN_H

#include "multiproc.h"

#endif /* MP_POPEN_H */
