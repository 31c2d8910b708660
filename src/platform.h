/* The backend contract: the only way core code (the files in src/) reaches the operating system.
 * src/posix/ and src/win32/ each implement every function declared here, in files named
 * after the feature (system.c, ...). Core code never includes an OS header. */
#ifndef MP_PLATFORM_H
#define MP_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

/* ---- system: clock, randomness, identity, OS error text ------------------------- */

/* Monotonic clock in nanoseconds; never goes backwards, unrelated to wall time. */
uint64_t mp_plat_monotonic_ns(void);

/* Fills buf with len bytes from the OS's CSPRNG (getrandom / BCryptGenRandom).
 * Returns 0 or MP_EOS with the detailed error set. */
int mp_plat_random_bytes(void *buf, size_t len);

/* The calling process's id and its parent's id (0 if unknown). */
int64_t mp_plat_getpid(void);
int64_t mp_plat_getppid(void);

/* The last OS error of the calling thread (errno / GetLastError) as a number, and its
 * text written into buf (UTF-8, NUL-terminated, truncated to size). */
long mp_plat_last_os_error(void);
void mp_plat_os_error_text(long err, char *buf, size_t size);

#endif /* MP_PLATFORM_H */
