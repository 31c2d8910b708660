/* Public timeouts as monotonic deadlines (sync.c). Not part of the public API. */
#ifndef MP_DEADLINE_H
#define MP_DEADLINE_H

#include <stdint.h>

/* Turns a public timeout (MP_FOREVER, 0, or milliseconds) into a monotonic deadline in ns
 * (-1: forever). Returns 0, or MP_EINVAL for a timeout below MP_FOREVER. */
int mp__deadline_ns(int timeout_ms, int64_t *deadline_ns);

#endif /* MP_DEADLINE_H */
