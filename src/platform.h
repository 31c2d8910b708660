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

/* Closes a handle; MP_PLAT_INVALID is ignored. (posix/handle.c, win32/handle.c) */
void mp_plat_handle_close(mp_plat_handle h);

/* Duplicates a handle within this process; the copy is close-on-exec / non-inheritable.
 * Returns 0 or MP_EOS. */
int mp_plat_handle_dup(mp_plat_handle h, mp_plat_handle *out);

/* ---- channel: byte streams between processes (posix/channel.c, win32/channel.c) ------ */
/* Owned by the Pipe/Connection work: a socketpair end on POSIX, an overlapped named-pipe
 * end on Windows. */
typedef struct mp_plat_chan mp_plat_chan;

/* Directions of a channel end. */
enum { MP_CHAN_READ = 1, MP_CHAN_WRITE = 2 };

/* Creates a connected pair. duplex != 0: both ends read and write; duplex == 0: *a reads
 * and *b writes (a pipe). Both handles close-on-exec / non-inheritable. */
int mp_plat_chan_pair(mp_plat_chan **a, mp_plat_chan **b, int duplex);
/* Wraps a handle (owned from now on; closed on failure too) into a channel with the given
 * MP_CHAN_* directions: a child imports a handed-down handle this way. */
int mp_plat_chan_wrap(mp_plat_chan **c, mp_plat_handle h, int dirs);
/* The channel's handle (still owned by the channel) and directions. */
mp_plat_handle mp_plat_chan_handle(const mp_plat_chan *c);
int mp_plat_chan_dirs(const mp_plat_chan *c);
/* Reads between 1 and len bytes (len > 0), waiting at most timeout_ms (MP_FOREVER blocks).
 * Returns 0 with *nread set, MP_ETIMEDOUT (nothing read), MP_EEOF (the peer closed or
 * vanished; the message says which) or MP_EOS. EINTR is retried. */
int mp_plat_chan_read(mp_plat_chan *c, void *buf, size_t len, int timeout_ms, size_t *nread);
/* One piece of a gathered write. */
typedef struct mp_plat_buf {
  const void *base;
  size_t len;
} mp_plat_buf;
/* Writes all the pieces, in order, blocking until done. Returns 0, MP_EBROKEN (the peer is
 * gone; never a signal) or MP_EOS. Short writes and EINTR are handled. */
int mp_plat_chan_write(mp_plat_chan *c, const mp_plat_buf *bufs, size_t nbufs);
/* Closes the handle and frees the channel; NULL is ignored. */
void mp_plat_chan_close(mp_plat_chan *c);

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
