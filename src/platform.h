/* The backend contract: the only way core code (the files in src/) reaches the operating system.
 * src/posix/ and src/win32/ each implement every function declared here, in files named
 * after the feature (system.c, ...). Core code never includes an OS header. */
#ifndef MP_PLATFORM_H
#define MP_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#include "multiproc.h" /* the MP_E* codes and mp_set_error, shared by both sides of the seam */

/* ---- the error service: how a backend reports a failed OS call (error.c) --------------- */

/* Sets the thread's error to "<what>: <OS error text> (OS error N)" from the last OS
 * error and returns MP_EOS. Used right after a failed OS call in a backend. */
int mp__os_error(const char *what);

/* Like mp__os_error for a known OS error number and a chosen MP_E* code. */
int mp__os_error_code(int code, long os_err, const char *what);

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

/* Sleeps for ms > 0 milliseconds, resuming after signals (mp_sleep_ms). */
void mp_plat_sleep_ms(int ms);

/* One library-wide lock for rarely touched global state (the registry of children).
 * Consistent in a fork child (pthread_atfork on POSIX). */
void mp_plat_global_lock(void);
void mp_plat_global_unlock(void);

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
/* Reads like mp_plat_chan_read, for a read that expects to wait (a reply just requested):
 * a timed read on a socket waits before reading instead of trying a read that would fail
 * first, saving a system call per message (POSIX). */
int mp_plat_chan_read_awaited(mp_plat_chan *c, void *buf, size_t len, int timeout_ms,
                              size_t *nread);
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

/* Handing handles to a process that already runs, at the other end of a duplex channel
 * (a pool worker). How depends on the system, as mp_plat_handle_passing says:
 * MP_PLAT_PASS_ALONG (POSIX): the handles ride along the data of a write
 *   (mp_plat_chan_write_along, SCM_RIGHTS on the socket) and come out of the reader's
 *   mp_plat_chan_read_along, in the order they were sent;
 * MP_PLAT_PASS_INTO (Windows): the sender duplicates each handle into the peer process
 *   (mp_plat_handle_into) and tells it the values there inside its message. */
enum { MP_PLAT_PASS_ALONG = 1, MP_PLAT_PASS_INTO = 2 };
#define MP_PLAT_MAX_PASS 253 /* handles along one write (Linux's SCM_MAX_FD) */
int mp_plat_handle_passing(void);
/* Writes like mp_plat_chan_write with nh (<= MP_PLAT_MAX_PASS) handles attached to the
 * first byte; the caller keeps its own. MP_EINVAL on a channel that cannot carry them.
 * Where handles do not travel along (Windows), only nh == 0 is accepted. */
int mp_plat_chan_write_along(mp_plat_chan *c, const mp_plat_buf *bufs, size_t nbufs,
                             const mp_plat_handle *h, size_t nh);
/* Reads like mp_plat_chan_read and stores in h[0..*nh) the handles (new, close-on-exec)
 * that came with the bytes read; none ever come on Windows. Handles beyond max are
 * closed and reported as MP_EPROTO. */
int mp_plat_chan_read_along(mp_plat_chan *c, void *buf, size_t len, int timeout_ms, size_t *nread,
                            mp_plat_handle *h, size_t max, size_t *nh);
/* MP_PLAT_PASS_INTO: duplicates h into the process proc (a process handle, see
 * mp_plat_child.wait) and gives its value there; the caller keeps h. MP_EBROKEN when proc
 * has exited or is exiting. MP_ENOTSUP elsewhere. */
int mp_plat_handle_into(mp_plat_handle proc, mp_plat_handle h, mp_plat_handle *theirs);

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

/* ---- threads, in-process locks, thread-local slots (thread.c, sync.c, tls.c) --------- */
/* Owned by the threads/sync work. Deadlines are mp_plat_monotonic_ns() readings; a negative
 * deadline means "wait forever". */

/* A running thread. reap and detach release it. */
typedef struct mp_plat_thread mp_plat_thread;
/* Starts a thread running fn(arg) (OS names and TLS are the caller's business). */
int mp_plat_thread_start(mp_plat_thread **t, void (*fn)(void *), void *arg);
/* Waits, without polling, until the thread's function has returned: 0 or MP_ETIMEDOUT.
 * Several threads may wait at once; t stays valid. */
int mp_plat_thread_wait(mp_plat_thread *t, int64_t deadline_ns);
/* After a successful wait: waits out the thread's exit (TLS destructors) and releases t. */
void mp_plat_thread_reap(mp_plat_thread *t);
/* Lets the thread clean up after itself when it ends; t is released. */
void mp_plat_thread_detach(mp_plat_thread *t);
/* The calling thread's OS id (gettid / GetCurrentThreadId). */
uint64_t mp_plat_thread_id(void);
/* 1 if the calling thread is the process's main thread. */
int mp_plat_thread_is_main(void);
/* Sets the calling thread's OS-visible name where the OS allows (truncated as the OS
 * requires); best effort. Reads it back into buf: 0, or MP_ENOTSUP where the OS has none. */
void mp_plat_thread_set_os_name(const char *name);
int mp_plat_thread_get_os_name(char *buf, size_t size);
/* Logical processors online in the system (at least 1), like os.cpu_count(). */
int mp_plat_cpu_count(void);
/* Atomically adds v to *p and returns the new value (sequentially consistent). */
int64_t mp_plat_atomic_add(int64_t *p, int64_t v);

/* A mutex and a condition variable held by value (no allocation): pthread_mutex_t /
 * pthread_cond_t (CLOCK_MONOTONIC) on POSIX, SRWLOCK / CONDITION_VARIABLE on Windows. */
typedef union mp_plat_mutex {
  void *align_p;
  long long align_l;
  double align_d;
  unsigned char bytes[64];
} mp_plat_mutex;
typedef union mp_plat_cond {
  void *align_p;
  long long align_l;
  double align_d;
  unsigned char bytes[64];
} mp_plat_cond;
int mp_plat_mutex_init(mp_plat_mutex *m);
void mp_plat_mutex_destroy(mp_plat_mutex *m);
void mp_plat_mutex_lock(mp_plat_mutex *m);
void mp_plat_mutex_unlock(mp_plat_mutex *m);
int mp_plat_cond_init(mp_plat_cond *c);
void mp_plat_cond_destroy(mp_plat_cond *c);
/* Releases m, waits for a signal or the deadline, re-acquires m: 0 or MP_ETIMEDOUT. May
 * wake spuriously: callers re-check their predicate. */
int mp_plat_cond_wait(mp_plat_cond *c, mp_plat_mutex *m, int64_t deadline_ns);
void mp_plat_cond_signal(mp_plat_cond *c);
void mp_plat_cond_broadcast(mp_plat_cond *c);

/* Thread-local slots whose destructor runs for each thread's non-NULL value at that
 * thread's exit, also for threads the library did not start (pthread keys / FLS). */
int mp_plat_tls_create(uint64_t *key, void (*dtor)(void *));
void mp_plat_tls_free(uint64_t key);
int mp_plat_tls_set(uint64_t key, void *value);
void *mp_plat_tls_get(uint64_t key);

/* ---- process-shared memory, lock, semaphore, event (shm.c, psync.c) ------------------ */
/* Each object is one OS handle that a child can import: POSIX a memfd (or unlinked
 * shm_open) fd whose mapping holds the state; Windows a mapping, mutex, semaphore or event
 * HANDLE. import takes ownership of h: it is closed on failure too. */
typedef struct mp_plat_shm mp_plat_shm;
int mp_plat_shm_create(mp_plat_shm **m, size_t size);
int mp_plat_shm_import(mp_plat_shm **m, mp_plat_handle h, size_t size);
void *mp_plat_shm_addr(const mp_plat_shm *m);
mp_plat_handle mp_plat_shm_handle(const mp_plat_shm *m);
void mp_plat_shm_free(mp_plat_shm *m);
/* Tests: on 1, shared memory is made as where memfd_create is refused (POSIX shm_open). */
void mp_plat_shm_test_no_memfd(int on);

/* A dead process wakes nobody. A wait whose waker could die between changing the state and
 * waking (the queue's events on every system; every wait of the portable POSIX backend)
 * sleeps at most this long at a time and looks again: a lost wake-up costs this, not a hang. */
#define MP_PLAT_RECHECK_NS ((int64_t)100 * 1000000)

/* A robust lock: acquire gives 0, MP_EOWNERDEAD (the holder died; now held and
 * consistent), MP_ETIMEDOUT or MP_EDEADLK (the calling thread holds it). Release by a
 * thread that does not hold it: MP_EPERM. A waiter killed while it waits or just after its
 * wake-up never leaves the others asleep on a free lock. */
typedef struct mp_plat_plock mp_plat_plock;
int mp_plat_plock_create(mp_plat_plock **l);
int mp_plat_plock_import(mp_plat_plock **l, mp_plat_handle h);
mp_plat_handle mp_plat_plock_handle(const mp_plat_plock *l);
int mp_plat_plock_acquire(mp_plat_plock *l, int64_t deadline_ns);
int mp_plat_plock_release(mp_plat_plock *l);
void mp_plat_plock_free(mp_plat_plock *l);

/* A counting semaphore; release beyond maxvalue is MP_EINVAL. A waiter or releaser killed at
 * any moment leaves neither a unit stranded among sleepers nor a sleeper unwoken. */
typedef struct mp_plat_psem mp_plat_psem;
int mp_plat_psem_create(mp_plat_psem **s, unsigned initial, unsigned maxvalue);
int mp_plat_psem_import(mp_plat_psem **s, mp_plat_handle h);
mp_plat_handle mp_plat_psem_handle(const mp_plat_psem *s);
int mp_plat_psem_acquire(mp_plat_psem *s, int64_t deadline_ns);
int mp_plat_psem_release(mp_plat_psem *s);
int mp_plat_psem_value(mp_plat_psem *s, unsigned *value); /* free units now */
void mp_plat_psem_free(mp_plat_psem *s);

/* A manual-reset event; a setter killed inside set has set and woken, or not set. */
typedef struct mp_plat_pevent mp_plat_pevent;
int mp_plat_pevent_create(mp_plat_pevent **e);
int mp_plat_pevent_import(mp_plat_pevent **e, mp_plat_handle h);
mp_plat_handle mp_plat_pevent_handle(const mp_plat_pevent *e);
int mp_plat_pevent_set(mp_plat_pevent *e);
int mp_plat_pevent_clear(mp_plat_pevent *e);
int mp_plat_pevent_is_set(mp_plat_pevent *e);
int mp_plat_pevent_wait(mp_plat_pevent *e, int64_t deadline_ns);
/* Tests: 1 once a waiter has announced that it sleeps (it then sees any later set, even one
 * cleared before it runs), 0 before; MP_ENOTSUP where the backend cannot tell. */
int mp_plat_pevent_sleepers(mp_plat_pevent *e);
void mp_plat_pevent_free(mp_plat_pevent *e);

/* ---- the child engine: start, wait, signal, release (posix/child.c, win32/child.c) ------ */
/* One engine for every child: mp_process (process.c) and mp_popen (popen.c) are thin layers
 * over it, and the reap-later registry is in core (child.c). Exit statuses are decoded once
 * per backend into one convention: >= 0 is the exit code, < 0 minus the signal number (on
 * Windows our terminate is -15 and kill -9, crashes map to -11, -4, -8, -6). */

/* The signal numbers used in exit codes on every system. */
enum {
  MP_SIG_ILL = 4,
  MP_SIG_ABRT = 6,
  MP_SIG_FPE = 8,
  MP_SIG_KILL = 9,
  MP_SIG_SEGV = 11,
  MP_SIG_TERM = 15
};

/* How a child is started (mp_plat_child_spec.flags). */
enum {
  MP_CHILD_DIE_WITH_PARENT = 1, /* killed when this process dies (PDEATHSIG / kill-on-close job) */
  MP_CHILD_NEW_GROUP = 2,       /* leads a process group (POSIX) / CREATE_NEW_PROCESS_GROUP */
  MP_CHILD_DETACHED = 4,        /* new session (POSIX) / DETACHED_PROCESS, outside our jobs */
  MP_CHILD_OWN_JOB = 8          /* Windows: a job of its own, so a tree signal reaches its
                                   descendants; POSIX: the process group does that */
};

/* What the backend can do; core asks instead of testing the OS (mp_plat_child_caps). */
enum {
  MP_CAP_FORK = 1,       /* mp_plat_child_fork works */
  MP_CAP_ZOMBIES = 2,    /* an exited child must be reaped (its release does not reap it) */
  MP_CAP_BOOT_HANDED = 4 /* the child holds its bootstrap handle once spawn returns, so the
                            parent may close its copy at once (POSIX); otherwise the child
                            takes it from the parent, which keeps it until "hello" */
};
int mp_plat_child_caps(void);

/* A started child as the backend tracks it. */
typedef struct mp_plat_child {
  int64_t pid;
  mp_plat_handle wait; /* ready (pollable / waitable) once the child exited: a pidfd, a
                          watcher's notification pipe (POSIX), the process HANDLE (Windows) */
  mp_plat_handle job;  /* Windows: the child's own job (MP_CHILD_OWN_JOB) or INVALID; POSIX:
                          the watcher's end of the pipe until the wait, or INVALID */
  int flags;           /* the MP_CHILD_* flags it was started with */
  int backend;         /* the backend's own note (how wait was made) */
  int reaped;          /* the exit status is known; never signal the pid again */
  int status;          /* once reaped: exit code, or minus the signal number */
} mp_plat_child;

/* What to start. */
typedef struct mp_plat_child_spec {
  const char *program;        /* the resolved path to run; NULL: this program's own image */
  const char *const *argv;    /* argv[0] is what the child sees as its name */
  const char *shell_cmd;      /* non-NULL: run through the system shell instead of argv */
  char *const *envp;          /* "NAME=value" list; NULL: the parent's environment */
  const char *cwd;            /* NULL: the parent's */
  mp_plat_handle stdio[3];    /* the child's stdin/stdout/stderr; INVALID: the parent's own */
  mp_plat_handle bootstrap;   /* this program only: the bootstrap channel's child end */
  const mp_plat_handle *pass; /* further handles the child receives, nothing else */
  mp_plat_handle *passed;     /* out: their values in the child */
  size_t npass;
  int flags; /* MP_CHILD_* */
} mp_plat_child_spec;

/* Starts a child. Exec failure is reported here: MP_ENOENT / MP_EPERM / MP_EOS with the
 * program's path and the OS error; on Windows unsafe batch-file arguments are MP_EINVAL. Once
 * a child exists the backend either returns 0 or has killed and reaped it. */
int mp_plat_child_spawn(const mp_plat_child_spec *spec, mp_plat_child *c);

/* POSIX: forks (from a long-lived internal thread, so that die-with-parent means the process,
 * not the calling thread). The child closes every close-on-exec handle but keep[0..nkeep)
 * and makes those close-on-exec, then calls child_fn(ctx) and exits with its result. Returns
 * in the parent with c filled. Without MP_CAP_FORK: MP_ENOTSUP. */
int mp_plat_child_fork(mp_plat_child *c, int flags, const mp_plat_handle *keep, size_t nkeep,
                       int (*child_fn)(void *), void *ctx);

/* Waits up to timeout_ms (MP_FOREVER blocks, 0 polls) for the child to exit and reaps it
 * (sets reaped and status; wait stays valid until release). 0 or MP_ETIMEDOUT. */
int mp_plat_child_wait(mp_plat_child *c, int timeout_ms);

/* Sends MP_SIG_TERM or MP_SIG_KILL to the child, or to its tree (process group / own job)
 * when tree is set. A reaped or exited child is left alone (its group may still be hit). */
int mp_plat_child_signal(mp_plat_child *c, int sig, int tree);

/* Closes the child's handles. It does not reap: see MP_CAP_ZOMBIES and core's child.c. */
void mp_plat_child_release(mp_plat_child *c);

/* Tests: on 1, later children are tracked as if pidfd_open were refused (old kernels,
 * gVisor, seccomp), so the fallback runs; no effect where there are no pidfds. */
void mp_plat_child_test_no_pidfd(int on);

/* ---- the fork server (posix/forkserver.c, win32/forkserver.c) --------------------------- */
/* A fork server is this program, spawned with the bootstrap like any child (core:
 * forkserver.c), that serves one client: the process at the other end of its control
 * handle. On request it forks a child from its own clean state and hands it the client's
 * handles (POSIX: SCM_RIGHTS), then reports the child's exit status. Its children die with
 * it (unless detached) and it dies with its client. Windows has none: MP_ENOTSUP. */

/* In the client: asks the server at the other end of ctl for a child with spec's bootstrap
 * handle, stdio (INVALID: this process's own, as they are now), working directory (NULL:
 * ours now), passed handles (their values in the child go to spec->passed, as with spawn)
 * and flags (MP_CHILD_DIE_WITH_PARENT only); the child also starts with the calling thread's
 * signal mask. c tracks the child: its wait handle becomes ready once the server reported
 * the exit status, signals go through the server, it is never a zombie of ours. Returns 0,
 * MP_EBROKEN (the server is gone and no child of this request can run: it never saw the
 * request, or it died before answering and a child it forked dies with it), MP_ECHILD (it
 * went away while forking a detached child, which may run on), MP_ETIMEDOUT (no answer
 * within timeout_ms), MP_EOS (fork failed there). */
int mp_plat_forkserver_fork(mp_plat_handle ctl, const mp_plat_child_spec *spec, int timeout_ms,
                            mp_plat_child *c);

/* In the server: serves the requests that come on ctl until the client closes it or dies,
 * then kills the children that must die with it and exits. Each child is forked from the
 * calling (main) thread and runs child_fn(client, bootstrap value): the bootstrap of a
 * spawned child, whose peer is client while its parent is the server (see
 * mp_plat_bootstrap_handle). Returns only if it cannot serve, with the error set. */
int mp_plat_forkserver_serve(mp_plat_handle ctl, int64_t client,
                             void (*child_fn)(int64_t client, int64_t boot));

/* The marker argument of a spawned child: "--multiproc-child=<ppid>:<bootstrap>:<flags>",
 * always argv[1] of exactly two arguments. */
#define MP_CHILD_MARKER "--multiproc-child="

/* The bootstrap value that the marker names for a child given handle h as its bootstrap. */
int64_t mp_plat_bootstrap_value(mp_plat_handle h);

/* In a spawned child: 0 if this process may run as a child (not setuid/setgid/AT_SECURE),
 * else MP_EPERM with the reason. */
int mp_plat_child_mode_allowed(void);

/* In a spawned child: turns the marker's bootstrap value into a handle (POSIX: the inherited
 * fd, made close-on-exec; Windows: duplicated out of the parent) after checking that its
 * peer is parent_pid, the process that created this one or, in a fork server's child, the
 * server's client (the server is then the direct parent). */
int mp_plat_bootstrap_handle(int64_t parent_pid, int64_t value, mp_plat_handle *out);

/* In a spawned child: makes the passed handles close-on-exec / non-inheritable, so that
 * nothing the target starts inherits them. */
void mp_plat_child_seal(const mp_plat_handle *h, size_t n);

/* Prepares a child: dies with its parent if asked (re-checking that the parent is still
 * parent_pid), and reports crashes as exit codes instead of dialogs. */
void mp_plat_child_setup(int64_t parent_pid, int die_with_parent);

/* Remembers argv[0] of this program (from mp_init), for systems that cannot name their own
 * executable otherwise. */
void mp_plat_note_argv0(const char *argv0);

/* This program's own executable path (UTF-8) into buf. */
int mp_plat_self_exe(char *buf, size_t size);

/* 1 if this process's command line is that of a spawned child (argv[1] is the marker). */
int mp_plat_started_as_child(void);

/* Flushes stdout and stderr where they hold unwritten output (never every stream: another
 * thread may hold stdin's lock while it blocks reading). A stream with nothing to write is
 * left untouched: after a fork, taking its lock is a copy-on-write page fault. */
void mp_plat_flush_stdio(void);

/* Flushes stdout and stderr (mp_plat_flush_stdio) and exits the process now with code. */
void mp_plat_exit(int code);

/* ---- a child's standard streams and pipes (posix/stdio.c, win32/stdio.c) --------------- */

/* Opens a pipe for stream index (0 stdin, 1 stdout, 2 stderr) of a child: *child gets the
 * child's end (owned by the caller, closed after the spawn), *parent the parent's. */
int mp_plat_stdio_pipe(int index, mp_plat_handle *child, mp_plat_handle *parent);
/* Opens path (NULL: the null device) as stream index of a child, into *child: stdin reads,
 * stdout and stderr write (append, or truncate). */
int mp_plat_stdio_file(const char *path, int index, int append, mp_plat_handle *child);
/* This process's own stdin/stdout/stderr handle (index 0..2), or INVALID if it has none. */
mp_plat_handle mp_plat_stdio_parent(int index);
/* Checks that a caller's MP_STDIO_HANDLE is an open handle: 0 or MP_EINVAL. */
int mp_plat_stdio_check(mp_plat_handle h, int index);

/* Finds the program to run: name itself when search is 0 or name holds a directory part,
 * else the first match in path (the child's PATH; NULL: ours; Windows: PATHEXT and the
 * system directories too). *found is malloc'd. MP_ENOENT / MP_EPERM / MP_EINVAL. */
int mp_plat_find_program(const char *name, const char *path, int search, char **found);

/* Growable byte buffer for captured output; always has room for a terminating NUL. */
typedef struct mp_plat_outbuf {
  char *data;
  size_t len, cap;
} mp_plat_outbuf;

/* Makes room for at least `extra` more bytes (+ NUL); returns where they go, or NULL. */
char *mp__outbuf_reserve(mp_plat_outbuf *b, size_t extra);

/* Closes one of the parent's pipe ends; MP_PLAT_INVALID is ignored. */
void mp_plat_pipe_close(mp_plat_handle h);
/* Milliseconds left until deadline_ns (rounded up; -1: no deadline). Defined in popen.c. */
int mp__ms_until(int64_t deadline_ns);

#define MP_PUMP_FIRST 1      /* return after the first wait that found a pipe ready */
#define MP_PUMP_KEEP_STDIN 2 /* leave stdin open when the input is written; gone: MP_EBROKEN */
/* Moves data on the open pipes at once until stdin is written and closed and stdout and
 * stderr reach end of file (each pipe is closed and set to MP_PLAT_INVALID when done; a
 * reader that went away ends the input), or as flags say. Returns 0, or MP_ETIMEDOUT (no
 * message) with the progress kept in *in_off and the buffers. A passed deadline_ns moves
 * only what is ready now; -1: none. */
int mp_plat_pipe_pump(mp_plat_handle pipes[3], const void *in, size_t in_len, size_t *in_off,
                      mp_plat_outbuf *out, mp_plat_outbuf *err, int64_t deadline_ns, int flags);
/* This process's environment as a malloc'd NULL-terminated array of UTF-8 "NAME=value"
 * strings; free() the array alone (the strings are in its block, or the process's own). */
int mp_plat_environ(char ***env);
/* 1 where environment names compare case-insensitively (Windows). */
int mp_plat_env_icase(void);

/* ---- target references (posix/target.c, win32/target.c) ---------------------------- */

#define MP_FINGERPRINT_MAX 32

/* Where a function lives: its module (empty string for the main executable), its offset
 * from the module's base and the module's build fingerprint. */
typedef struct mp_plat_target {
  char module[1024];
  uint64_t offset;
  unsigned char fingerprint[MP_FINGERPRINT_MAX];
  size_t fingerprint_len;
} mp_plat_target;

/* Describes fn for a child. MP_EINVAL if fn is not inside a loaded module. */
int mp_plat_target_ref(void (*fn)(void), mp_plat_target *out);

/* In the child: finds (loading it if needed) the module, checks its fingerprint, and
 * returns the function. A mismatch is MP_ECHILD with a message, never a wild jump. */
int mp_plat_target_resolve(const mp_plat_target *t, void (**fn)(void));

/* ---- manager: TCP sockets and HMAC (socket.c, hmac.c) -------------------------------- */

/* A listening TCP socket (IPv4, non-blocking) with its own wake-up, so the thread that
 * polls it can be told to look at its state (a slot is free, or it must stop). */
typedef struct mp_plat_listener mp_plat_listener;
/* Binds host:port (host "" or "0.0.0.0": all interfaces; port 0: ephemeral) and listens.
 * The socket is close-on-exec / non-inheritable. */
int mp_plat_tcp_listen(mp_plat_listener **l, const char *host, int port, int backlog);
/* The port the listener is bound to. */
int mp_plat_tcp_port(const mp_plat_listener *l);
/* Makes the current or next mp_plat_tcp_poll report *woken (any thread; wakes coalesce). */
void mp_plat_tcp_wake(mp_plat_listener *l);
void mp_plat_tcp_close(mp_plat_listener *l);

/* An accepted TCP socket in non-blocking mode: the manager's handshake stage reads and
 * writes it without a thread of its own, then makes it a channel. */
typedef struct mp_plat_nbsock mp_plat_nbsock;
/* Accepts one pending connection without waiting: 0 with *s and the peer's IPv4 address
 * (host byte order) in *peer; MP_ETIMEDOUT if none is pending; MP_ENOMEM if the process
 * or the system is out of descriptors, buffers or memory (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM; the message names which); MP_EOS for other failures. Connections aborted before
 * they were accepted are skipped. The socket is close-on-exec / non-inheritable. */
int mp_plat_tcp_accept_nb(mp_plat_listener *l, mp_plat_nbsock **s, uint32_t *peer);
/* Waits at most timeout_ms (MP_FOREVER: no limit) until the wake-up fired (*woken, and it
 * is cleared), the listener has a connection (*accept_ready; only when listen is set), or
 * one of the n sockets is readable or its peer gone (ready[i]). 0, or MP_ENOMEM/MP_EOS. */
int mp_plat_tcp_poll(mp_plat_listener *l, int listen, mp_plat_nbsock *const *socks, size_t n,
                     unsigned char *ready, int *accept_ready, int *woken, int timeout_ms);
/* Reads what is there (at most len bytes): 0 with *n > 0, MP_ETIMEDOUT if nothing is,
 * MP_EEOF if the peer closed or reset the connection. */
int mp_plat_nbsock_recv(mp_plat_nbsock *s, void *buf, size_t len, size_t *n);
/* Sends a small message (a handshake frame) whole, without waiting: 0, or MP_EBROKEN if
 * the peer is gone or does not read. */
int mp_plat_nbsock_send(mp_plat_nbsock *s, const void *buf, size_t len);
/* Turns the socket into a blocking socket channel; s is consumed (closed on failure). */
int mp_plat_nbsock_to_chan(mp_plat_nbsock *s, mp_plat_chan **c);
void mp_plat_nbsock_close(mp_plat_nbsock *s);
/* Connects to host:port within timeout_ms (MP_FOREVER: the OS's own limit): a channel, or
 * MP_ETIMEDOUT, MP_EOS (refused, unreachable; the message names the address). */
int mp_plat_tcp_connect(const char *host, int port, int timeout_ms, mp_plat_chan **c);
/* Shuts a socket channel down both ways: a thread blocked reading it wakes with MP_EEOF. */
void mp_plat_tcp_shutdown(mp_plat_chan *c);
/* 1 if the peer of a socket channel has closed or reset it (without reading data), else 0. */
int mp_plat_tcp_peer_gone(mp_plat_chan *c);

enum { MP_HMAC_MD5 = 1, MP_HMAC_SHA256 = 2 };
/* HMAC of msg under key; out must hold 32 bytes; *outlen receives 16 or 32. */
int mp_plat_hmac(int alg, const void *key, size_t keylen, const void *msg, size_t len,
                 unsigned char *out, size_t *outlen);

/* ---- net: a socket library's writes (posix/net.c, win32/net.c) ------------------------ */

/* Sends up to len bytes on a connected socket (a hiredis socket: an fd, or a SOCKET on
 * Windows) without ever raising SIGPIPE: 0 with *sent > 0, MP_ETIMEDOUT (the socket's send
 * timeout passed with nothing sent), MP_EBROKEN (the peer is gone) or MP_EOS; EINTR is
 * retried. The message names the OS error. */
int mp_plat_sock_send(uint64_t sock, const void *buf, size_t len, size_t *sent);

/* hiredis' TLS writes go through OpenSSL's own send(), which on POSIX raises SIGPIPE when
 * the server has gone. Between hold and release the calling thread has SIGPIPE blocked,
 * and release discards one that became pending meanwhile, so a lost Redis is an error,
 * never a killed process, and the process's signal dispositions are never touched. hold
 * returns a token for release. Nothing to do on Windows. */
int mp_plat_sigpipe_hold(void);
void mp_plat_sigpipe_release(int token);

#endif /* MP_PLATFORM_H */
