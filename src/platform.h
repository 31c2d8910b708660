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

/* ---- popen: external commands (posix/popen.c, win32/popen.c) -------------------------- */

struct mp_stdio; /* include/multiproc.h */

/* What the core asks the backend to start. */
typedef struct mp_plat_spawn {
  const char *const *argv;         /* argv[0] is the program as the caller gave it */
  const char *shell_cmd;           /* non-NULL: run this through the system shell instead */
  const struct mp_stdio *stdio[3]; /* stdin, stdout, stderr (never NULL) */
  const char *cwd;                 /* NULL: the parent's */
  char **envp;                     /* the child's "NAME=value" list; NULL: the parent's */
  const char *path;                /* PATH to search when search_path (the child's PATH) */
  int search_path, new_group, detached;
} mp_plat_spawn;

/* A started child as the backend tracks it. */
typedef struct mp_plat_child {
  int64_t pid;
  mp_plat_handle proc;     /* POSIX: pidfd or MP_PLAT_INVALID; Windows: process HANDLE */
  mp_plat_handle job;      /* Windows: the child's job object (MP_PLAT_INVALID if none) */
  mp_plat_handle pipes[3]; /* parent's ends: stdin (write), stdout, stderr (read) */
  int own_group;           /* POSIX: the child leads its own process group */
  int killed_sig;          /* Windows: 15 or 9 after terminate/kill took effect */
  int reaped;              /* the exit status is known (POSIX: waitpid returned it) */
  int status;              /* exit code, or minus the signal number */
} mp_plat_child;

/* Growable byte buffer for captured output; always has room for a terminating NUL. */
typedef struct mp_plat_outbuf {
  char *data;
  size_t len, cap;
} mp_plat_outbuf;

/* Makes room for at least `extra` more bytes (+ NUL); returns where they go, or NULL. */
char *mp__outbuf_reserve(mp_plat_outbuf *b, size_t extra);

/* Starts the child. Exec failure is reported here: MP_ENOENT / MP_EPERM / MP_EOS with the
 * program's path and the OS error; on Windows unsafe batch-file arguments are MP_EINVAL. */
int mp_plat_popen_spawn(const mp_plat_spawn *spec, mp_plat_child *child);
/* Waits up to timeout_ms (MP_FOREVER, 0 polls) for the child to exit: 0 once it has (sets
 * reaped and status), MP_ETIMEDOUT while it runs. */
int mp_plat_popen_wait(mp_plat_child *child, int timeout_ms);
/* Sends sig (15: terminate, 9: kill) to the child, or to its whole tree (process group /
 * job) when tree is set. Succeeds quietly if the child has already exited. */
int mp_plat_popen_signal(mp_plat_child *child, int sig, int tree);
/* Releases the process and job handles. A child that has not been reaped is remembered and
 * reaped later by mp_plat_popen_reap_abandoned, so it never remains a zombie. */
void mp_plat_popen_release(mp_plat_child *child);
/* Reaps every remembered child that has exited, without blocking. */
void mp_plat_popen_reap_abandoned(void);
/* Closes one of the parent's pipe ends; MP_PLAT_INVALID is ignored. */
void mp_plat_popen_close(mp_plat_handle h);
/* Reads what is there (at most cap) from a read pipe: 0 with *n > 0, MP_EEOF, MP_ETIMEDOUT. */
int mp_plat_popen_read(mp_plat_handle h, void *buf, size_t cap, size_t *n, int timeout_ms);
/* Writes all of buf: 0, MP_ETIMEDOUT or MP_EBROKEN (reader gone); *written says how much. */
int mp_plat_popen_write(mp_plat_handle h, const void *buf, size_t len, size_t *written,
                        int timeout_ms);
/* Moves data on all three pipes at once until stdin is written and closed and stdout and
 * stderr reach end of file (each pipe is closed and set to MP_PLAT_INVALID when done; a
 * reader that went away ends the input). Returns 0, or MP_ETIMEDOUT with the progress kept
 * in *in_off and the buffers. timeout_ms 0 moves only what is ready now. */
int mp_plat_popen_pump(mp_plat_handle pipes[3], const void *in, size_t in_len, size_t *in_off,
                       mp_plat_outbuf *out, mp_plat_outbuf *err, int timeout_ms);
/* A copy of this process's environment as a malloc'd NULL-terminated array of malloc'd
 * UTF-8 "NAME=value" strings. */
int mp_plat_environ(char ***env);
/* 1 where environment names compare case-insensitively (Windows). */
int mp_plat_env_icase(void);

#endif /* MP_PLATFORM_H */
