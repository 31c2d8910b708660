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

/* ---- handles ------------------------------------------------------------------------ */

/* An OS handle: a file descriptor on POSIX, a HANDLE on Windows. Every handle the library
 * creates is close-on-exec / non-inheritable; a child receives exactly the handles named by
 * its arguments (see process.c). */
typedef intptr_t mp_plat_handle;
#define MP_PLAT_INVALID ((mp_plat_handle)-1)

/* Closes a handle; MP_PLAT_INVALID is ignored. */
void mp_plat_handle_close(mp_plat_handle h);

/* ---- channel: byte streams between processes (posix/channel.c, win32/channel.c) ------ */
/* Owned by the Pipe/Connection work: a socketpair end on POSIX, an overlapped named-pipe
 * end on Windows. */
typedef struct mp_plat_chan mp_plat_chan;

/* ---- wait: block on several channels and processes at once (wait.c) ------------------ */

/* One thing mp_plat_wait_many watches: a channel (readable, or its peer gone) when chan is
 * not NULL, else a process handle (POSIX pidfd, Windows process HANDLE) that becomes ready
 * when the process exits. ready is set to 1 for each source that is ready. */
typedef struct mp_plat_waitsrc {
  mp_plat_chan *chan;
  mp_plat_handle proc;
  int ready;
} mp_plat_waitsrc;

/* Waits until at least one source is ready or timeout_ms passes (MP_FOREVER blocks).
 * Returns the number of ready sources, MP_ETIMEDOUT, or an error. Never busy-waits; on
 * Windows more than 64 sources work. */
int mp_plat_wait_many(mp_plat_waitsrc *srcs, size_t n, int timeout_ms);

/* ---- process: fork, spawn, wait, signal (posix/process.c, win32/process.c) ------------ */
/* Declared by the Process work below this line. */

#endif /* MP_PLATFORM_H */
