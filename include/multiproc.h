/* multiproc — processes, pipes, queues, pools, subprocesses, threads and network managers
 * for C programs on Linux and Windows, in the manner of Python's multiprocessing.
 *
 * The whole public API. Conventions: every call returns 0 or a negative MP_E* code;
 * mp_strerror() names a code and mp_last_error() gives the calling thread's detailed
 * message. Objects are opaque; mp_X_create(&obj, ...) makes one, mp_X_free(obj) releases
 * it. Timeouts are int milliseconds: MP_FOREVER blocks, 0 polls. Strings are UTF-8. */
#ifndef MULTIPROC_H
#define MULTIPROC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(MP_SHARED)
#  ifdef MP_BUILDING_LIBRARY
#    define MP_API __declspec(dllexport)
#  else
#    define MP_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define MP_API __attribute__((visibility("default")))
#else
#  define MP_API
#endif

#define MP_VERSION_MAJOR 0
#define MP_VERSION_MINOR 1
#define MP_VERSION_PATCH 0

/* ---- errors ------------------------------------------------------------------------ */

#define MP_FOREVER (-1)

typedef enum mp_error {
  MP_OK = 0,
  MP_EINVAL = -1,      /* bad argument */
  MP_ENOMEM = -2,      /* out of memory */
  MP_ETIMEDOUT = -3,   /* the timeout expired */
  MP_EEMPTY = -4,      /* nothing to get before the timeout (queue.Empty) */
  MP_EFULL = -5,       /* no room before the timeout (queue.Full) */
  MP_EEOF = -6,        /* the peer closed its end; no more data */
  MP_EPROTO = -7,      /* malformed or oversized frame, bad encoding */
  MP_EAUTH = -8,       /* authentication failed */
  MP_EBROKEN = -9,     /* the peer died or the object was torn mid-operation */
  MP_ECHILD = -10,     /* a child process failed to start or bootstrap */
  MP_EOS = -11,        /* an operating-system call failed; see mp_last_error() */
  MP_ECLOSED = -12,    /* the object was closed */
  MP_ECANCELED = -13,  /* the operation was cancelled (pool terminated) */
  MP_ETASK = -14,      /* a task reported failure */
  MP_EWORKER = -15,    /* the worker running a task died */
  MP_EDEADLK = -16,    /* the call would deadlock (e.g. re-acquiring a held lock) */
  MP_EOWNERDEAD = -17, /* a lock's holder died; the lock is now held and consistent */
  MP_ENOTSUP = -18,    /* not supported on this system or in this configuration */
  MP_ESTATE = -19,     /* the object is in the wrong state for this call */
  MP_ENOENT = -20,     /* no such file, name or object */
  MP_EPERM = -21,      /* permission denied */
  MP_EBUSY = -22,      /* the resource is in use */
} mp_error;

/** Returns the library version as "major.minor.patch". */
MP_API const char *mp_version(void);
/** Returns a short constant description of an MP_E* code ("timed out"). */
MP_API const char *mp_strerror(int code);
/** Returns the calling thread's message for its last failed call (never NULL). */
MP_API const char *mp_last_error(void);
/** Returns the code of the calling thread's last failed call, or 0. */
MP_API int mp_last_error_code(void);
/** Sets the calling thread's error message (printf-style) and returns `code`. */
MP_API int mp_set_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/** Frees a buffer that the library allocated for the caller. */
MP_API void mp_free(void *ptr);

/* ---- process utilities ------------------------------------------------------------- */

/** Returns the calling process's id. */
MP_API int64_t mp_getpid(void);
/** Returns a monotonic clock reading in nanoseconds (for timing, never wall time). */
MP_API uint64_t mp_monotonic_ns(void);
/** Fills buf with len cryptographically random bytes from the OS. */
MP_API int mp_random_bytes(void *buf, size_t len);

/* ---- opaque types ------------------------------------------------------------------ */

typedef struct mp_args mp_args;       /* a typed argument list for a child's target */
typedef struct mp_process mp_process; /* a child process running a function */
typedef struct mp_conn mp_conn;       /* one end of a Pipe */
typedef struct mp_value mp_value;     /* a typed value: nil, bool, int, float, str, bytes,
                                         list, tuple, dict */

/* ---- values (value.c) -------------------------------------------------------------- */
/* Declared by the Pipe/Connection work. */

/* ---- pipes and connections (connection.c) ------------------------------------------- */
/* Declared by the Pipe/Connection work. */

/* ---- waiting on several objects (wait.c) -------------------------------------------- */

enum { MP_WAIT_CONN = 1, MP_WAIT_PROCESS = 2 };

/* One object for mp_wait: set kind and the matching pointer; mp_wait sets ready. */
typedef struct mp_waitable {
  int kind;
  union {
    mp_conn *conn;
    mp_process *process;
  } u;
  int ready;
} mp_waitable;

/** Builds an mp_waitable for a connection (ready: data to read, or the peer is gone). */
MP_API mp_waitable mp_waitable_conn(mp_conn *conn);
/** Builds an mp_waitable for a process (ready: it has exited). */
MP_API mp_waitable mp_waitable_process(mp_process *process);
/** Waits until at least one object is ready; returns how many (ready flags set),
 * MP_ETIMEDOUT, or an error. Like multiprocessing.connection.wait. */
MP_API int mp_wait(mp_waitable *objs, size_t n, int timeout_ms);

/* ---- arguments (args.c) ------------------------------------------------------------- */

typedef enum mp_arg_type {
  MP_ARG_NIL = 0,
  MP_ARG_BOOL,
  MP_ARG_INT,
  MP_ARG_DOUBLE,
  MP_ARG_STR,
  MP_ARG_BYTES,
  MP_ARG_CONN,
  MP_ARG_OBJECT, /* another passable object (queue, lock, shared memory) */
} mp_arg_type;

/** Creates an empty argument list. */
MP_API int mp_args_create(mp_args **args);
/** Frees an argument list (objects added to it are not freed: the caller owns them). */
MP_API void mp_args_free(mp_args *args);
/** Appends nil. */
MP_API int mp_args_add_nil(mp_args *args);
/** Appends a boolean (any non-zero value is true). */
MP_API int mp_args_add_bool(mp_args *args, int value);
/** Appends a 64-bit signed integer. */
MP_API int mp_args_add_int(mp_args *args, int64_t value);
/** Appends a double. */
MP_API int mp_args_add_double(mp_args *args, double value);
/** Appends a NUL-terminated UTF-8 string (copied; invalid UTF-8 is MP_EINVAL). */
MP_API int mp_args_add_str(mp_args *args, const char *value);
/** Appends len bytes (copied; may contain NULs; data may be NULL when len is 0). */
MP_API int mp_args_add_bytes(mp_args *args, const void *data, size_t len);
/** Appends a connection: the child gets its own handle to the same pipe end. */
MP_API int mp_args_add_conn(mp_args *args, mp_conn *conn);
/** Returns the number of arguments. */
MP_API size_t mp_args_count(const mp_args *args);
/** Returns the type of argument i, or MP_EINVAL if i is out of range. */
MP_API int mp_args_type(const mp_args *args, size_t i);
/** Reads argument i as a boolean; MP_EINVAL if absent or of another type. */
MP_API int mp_args_get_bool(const mp_args *args, size_t i, int *value);
/** Reads argument i as an integer. */
MP_API int mp_args_get_int(const mp_args *args, size_t i, int64_t *value);
/** Reads argument i as a double. */
MP_API int mp_args_get_double(const mp_args *args, size_t i, double *value);
/** Reads argument i as a string (borrowed, NUL-terminated; len excludes the NUL). */
MP_API int mp_args_get_str(const mp_args *args, size_t i, const char **value, size_t *len);
/** Reads argument i as bytes (borrowed). */
MP_API int mp_args_get_bytes(const mp_args *args, size_t i, const void **data, size_t *len);
/** Reads argument i as a connection (borrowed: valid while the target runs). */
MP_API int mp_args_get_conn(const mp_args *args, size_t i, mp_conn **conn);

/* ---- processes (process.c) ---------------------------------------------------------- */

/* A process's target: runs in the child; its return value becomes the exit code. */
typedef int (*mp_target_fn)(mp_args *args);

typedef enum mp_start_method {
  MP_START_DEFAULT = 0, /* the process-wide default (fork on POSIX, spawn on Windows) */
  MP_START_FORK = 1,    /* POSIX only: fork and call the target, no exec */
  MP_START_SPAWN = 2,   /* re-execute this program, which runs the target from mp_init */
} mp_start_method;

typedef struct mp_process_opts {
  const char *name;       /* NULL: "Process-N" */
  int daemon;             /* terminated at mp_shutdown instead of joined */
  int detached;           /* may outlive this process (no parent-death kill) */
  mp_start_method method; /* MP_START_DEFAULT: see mp_set_start_method */
} mp_process_opts;

/** Must be the first line of main: in a spawned child it runs the target and exits. */
MP_API int mp_init(int *argc, char ***argv);
/** Terminates daemon children and joins the others (mp_init arranges it at exit). */
MP_API void mp_shutdown(void);
/** Sets the process-wide start method; MULTIPROC_START_METHOD=fork|spawn overrides it. */
MP_API int mp_set_start_method(mp_start_method method);
/** Returns the start method that MP_START_DEFAULT means now. */
MP_API mp_start_method mp_get_start_method(void);
/** Creates a process object for fn(args); args is copied, opts may be NULL. */
MP_API int mp_process_create(mp_process **p, mp_target_fn fn, const mp_args *args,
                             const mp_process_opts *opts);
/** Starts the child; fails with the reason if it cannot start or bootstrap. */
MP_API int mp_process_start(mp_process *p);
/** Waits for the child to exit: 0, or MP_ETIMEDOUT if it is still running. */
MP_API int mp_process_join(mp_process *p, int timeout_ms);
/** Returns 1 while the child runs, 0 otherwise. */
MP_API int mp_process_is_alive(mp_process *p);
/** Stores the exit code: the target's return value, or minus the signal that ended it;
 * MP_ESTATE if the child has not exited. */
MP_API int mp_process_exitcode(mp_process *p, int *code);
/** Asks the child to stop (SIGTERM; TerminateProcess on Windows): exit code -15. */
MP_API int mp_process_terminate(mp_process *p);
/** Kills the child (SIGKILL; TerminateProcess on Windows): exit code -9. */
MP_API int mp_process_kill(mp_process *p);
/** Returns the child's pid, or 0 before start. */
MP_API int64_t mp_process_pid(const mp_process *p);
/** Returns the process's name. */
MP_API const char *mp_process_name(const mp_process *p);
/** Returns 1 if the process is a daemon. */
MP_API int mp_process_daemon(const mp_process *p);
/** Frees the process object; a running child is left running (and reaped at shutdown). */
MP_API void mp_process_free(mp_process *p);
/** Returns the parent's pid (0 if unknown). */
MP_API int64_t mp_getppid(void);
/** Returns the current process's name ("MainProcess" in the parent). */
MP_API const char *mp_current_process_name(void);

/* ---- subprocesses (popen.c) --------------------------------------------------------- */
/* External commands, like Python's subprocess. argv is a NULL-terminated array of UTF-8
 * strings and is never handed to a shell: only mp_run_shell does that. */

typedef struct mp_popen mp_popen; /* a running (or finished) external command */

/* Where one of the child's standard streams goes. */
typedef enum mp_stdio_mode {
  MP_STDIO_INHERIT = 0, /* the parent's own stream */
  MP_STDIO_PIPE,        /* a pipe to this process: mp_popen_write/read/communicate */
  MP_STDIO_DEVNULL,     /* /dev/null or NUL */
  MP_STDIO_FILE,        /* the file at path: read (stdin), or created/truncated (append=1
                           appends) for stdout and stderr */
  MP_STDIO_HANDLE,      /* an open fd (POSIX) or HANDLE (Windows) given as handle; the
                           child gets its own copy, the caller keeps the original */
  MP_STDIO_STDOUT       /* stderr only: the same place as stdout (merged) */
} mp_stdio_mode;

typedef struct mp_stdio {
  mp_stdio_mode mode;
  const char *path; /* MP_STDIO_FILE */
  int append;       /* MP_STDIO_FILE for stdout/stderr: append instead of truncating */
  intptr_t handle;  /* MP_STDIO_HANDLE */
} mp_stdio;

/* Use the popen's default timeout (mp_popen_opts.timeout_ms) in wait/communicate. */
#define MP_DEFAULT_TIMEOUT (-2)

typedef struct mp_popen_opts {
  mp_stdio std_in, std_out, std_err; /* zero: inherit all three */
  const char *cwd;                   /* NULL: the parent's */
  /* NULL-terminated list. With env_replace = 0 it edits the parent's environment:
   * "NAME=value" sets, "NAME" (no '=') removes. With env_replace = 1 it is the child's whole
   * environment ("NAME=value" entries only). Names compare case-insensitively on Windows. */
  const char *const *env;
  int env_replace;
  int search_path;       /* look argv[0] up in PATH (the child's PATH; PATHEXT on Windows)
                            when it holds no directory separator */
  int new_process_group; /* POSIX: setpgid(0,0), so kill_tree reaches the whole group;
                            Windows: CREATE_NEW_PROCESS_GROUP */
  int detached;          /* POSIX: new session (setsid); Windows: DETACHED_PROCESS, outside
                            the job; free() never waits for it */
  int timeout_ms;        /* default timeout for mp_run and MP_DEFAULT_TIMEOUT; 0 = none */
  const void *input;     /* mp_run/mp_check_output only: bytes written to stdin (which
                            becomes a pipe), then stdin is closed */
  size_t input_len;
} mp_popen_opts;

/* Which output stream mp_popen_read reads. */
enum { MP_STDOUT = 1, MP_STDERR = 2 };

/** Starts argv[0] with arguments argv; opts may be NULL. A program that cannot be started
 * (missing, not executable, bad cwd) fails here with MP_ENOENT/MP_EPERM/MP_EOS naming the
 * path; on Windows a batch-file argument that cannot be passed safely is MP_EINVAL. */
MP_API int mp_popen_create(mp_popen **p, const char *const *argv, const mp_popen_opts *opts);
/** Writes all len bytes to the child's stdin pipe; *written (may be NULL) says how many went
 * before MP_ETIMEDOUT or MP_EBROKEN (the child closed its stdin). */
MP_API int mp_popen_write(mp_popen *p, const void *buf, size_t len, size_t *written,
                          int timeout_ms);
/** Reads up to cap bytes from MP_STDOUT or MP_STDERR (a pipe) into buf: 0 with *n > 0,
 * MP_EEOF when the stream is finished, or MP_ETIMEDOUT. */
MP_API int mp_popen_read(mp_popen *p, int which, void *buf, size_t cap, size_t *n, int timeout_ms);
/** Closes the child's stdin pipe (it reads end of file). */
MP_API int mp_popen_close_stdin(mp_popen *p);
/** Writes in (may be NULL), closes stdin, reads stdout and stderr to their end and waits for
 * the child, all at once so that full pipes never deadlock. *out and *err (either may be
 * NULL when not wanted) receive NUL-terminated buffers to free with mp_free. On
 * MP_ETIMEDOUT they hold what arrived so far; calling again with the same input continues. */
MP_API int mp_popen_communicate(mp_popen *p, const void *in, size_t in_len, char **out,
                                size_t *out_len, char **err, size_t *err_len, int timeout_ms);
/** Waits for the child to exit: 0, or MP_ETIMEDOUT while it still runs. */
MP_API int mp_popen_wait(mp_popen *p, int timeout_ms);
/** Returns 1 if the child has exited (and reaps it), 0 if it runs, or an error. */
MP_API int mp_popen_poll(mp_popen *p);
/** Stores the exit status: the exit code, or minus the signal that ended it (Windows:
 * terminate gives -15, kill and kill_tree -9); MP_ESTATE while the child runs. */
MP_API int mp_popen_returncode(mp_popen *p, int *code);
/** Returns the child's process id. */
MP_API int64_t mp_popen_pid(const mp_popen *p);
/** Asks the child to stop: SIGTERM, or TerminateProcess on Windows. No-op once reaped. */
MP_API int mp_popen_terminate(mp_popen *p);
/** Kills the child: SIGKILL, or TerminateProcess on Windows. No-op once reaped. */
MP_API int mp_popen_kill(mp_popen *p);
/** Kills the child and its descendants: its process group on POSIX (the child must lead one:
 * new_process_group or detached, else only the child is killed), its job on Windows. */
MP_API int mp_popen_kill_tree(mp_popen *p);
/** Closes the pipes and frees p. A finished child is reaped; a running one is left running
 * and reaped later (by the next create, or at mp_shutdown) so it never stays a zombie. */
MP_API void mp_popen_free(mp_popen *p);

/* What mp_run returns. */
typedef struct mp_run_result {
  int returncode;  /* as mp_popen_returncode */
  char *out, *err; /* captured output (NUL-terminated) when that stream was a PIPE */
  size_t out_len, err_len;
} mp_run_result;

/** Runs argv to completion like subprocess.run: opts->input feeds stdin, PIPE streams are
 * captured into result, opts->timeout_ms bounds the run. Returns 0 whatever the exit code
 * (see result->returncode). On timeout the process tree is killed and reaped, result holds
 * the output so far and the call returns MP_ETIMEDOUT. Free result with mp_run_result_free. */
MP_API int mp_run(const char *const *argv, const mp_popen_opts *opts, mp_run_result *result);
/** Like mp_run, but hands cmdline to the system shell: /bin/sh -c on POSIX, cmd.exe /d /s /c
 * on Windows. The only call that gives a string to a shell; never build cmdline from
 * untrusted input. */
MP_API int mp_run_shell(const char *cmdline, const mp_popen_opts *opts, mp_run_result *result);
/** Frees the buffers in a result (and zeroes it). */
MP_API void mp_run_result_free(mp_run_result *result);
/** Runs argv with the streams as in opts (inherited by default) and stores its exit code,
 * like subprocess.call. */
MP_API int mp_call(const char *const *argv, const mp_popen_opts *opts, int *code);
/** Runs argv and returns its stdout (free with mp_free) like subprocess.check_output: a
 * non-zero exit is MP_ECHILD with the code in the message, and *out still holds the
 * output; *out is set (maybe NULL) whatever the result. */
MP_API int mp_check_output(const char *const *argv, const mp_popen_opts *opts, char **out,
                           size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* MULTIPROC_H */
