/* multiproc — processes, pipes, queues, pools, subprocesses, threads and network managers
 * for C programs on Linux and Windows, in the manner of Python's multiprocessing.
 *
 * The whole public API. The rules below hold for every function; a function's own comment
 * says only where it differs or adds.
 *
 * WHAT A FUNCTION RETURNS
 * - Calls return int: 0, or a negative MP_E* code (never a positive one, except as said
 *   next). mp_strerror() names a code; mp_last_error() gives the calling thread's detailed
 *   message (which call, which object or path, which OS error).
 * - Questions (mp_X_is_alive, mp_result_ready, mp_conn_poll, mp_queue_empty, ...) return 1
 *   or 0, or a negative code when they cannot answer.
 * - Value constructors (mp_value_int, mp_value_copy, ...) return the new value, or NULL
 *   with mp_last_error_code() set: the one exception, so values can be built inline.
 * - Plain readers of a property (mp_args_count, mp_process_pid, mp_pool_size,
 *   mp_thread_name, mp_version, ...) return the property itself and never fail; given NULL
 *   they return 0 or NULL. Functions that return void (mp_X_free, ...) accept NULL.
 *
 * TIMEOUTS: int milliseconds, and three named values
 * - In a call (timeout_ms argument): n > 0 waits up to n ms; 0 polls (never blocks);
 *   MP_FOREVER (-1) blocks until done (a peer that dies still ends the wait: MP_EEOF,
 *   MP_EBROKEN); MP_DEFAULT_TIMEOUT (-2) uses the object's own default, where it has one
 *   (mp_popen_*). Anything else below 0 is MP_EINVAL.
 * - In an option struct, 0 is never "poll": a zeroed field (a zeroed struct, or opts ==
 *   NULL) takes that field's default, and MP_DEFAULT_TIMEOUT says the same by name. The
 *   defaults differ by field — today 0 means four different things in four structs:
 *     mp_process_opts.start_timeout_ms      0: 30 s (a start is always bounded)
 *     mp_pool_opts.task_timeout_ms          0: no limit
 *     mp_popen_opts.timeout_ms              0: no limit
 *     mp_manager_opts.handshake_timeout_ms  0: 5 s (a handshake is always bounded)
 *   (and mp_map_opts.timeout_ms 0: no limit). MP_NO_LIMIT (-1, the value of MP_FOREVER)
 *   turns a limit off where a field allows it (task_timeout_ms, popen and map timeout_ms);
 *   in the two always-bounded fields every negative value means the default.
 * - Size and count fields follow the same rule: 0 is the default, named in each field's
 *   comment (maxsize 0: no message-count bound; max_message 0: MP_CONN_DEFAULT_MAX_MESSAGE;
 *   maxtasksperchild 0: never replaced; max_connections 0: 64; ...).
 *
 * OWNERSHIP
 * - Objects are opaque: mp_X_create(&obj, ...) makes one and mp_X_free(obj) releases it;
 *   freeing a process, pool or popen whose work still runs lets the work finish (see each).
 * - What a call hands back through a pointer argument is YOURS to free — buffers with
 *   mp_free, values with mp_value_free, objects with their mp_X_free — unless its comment
 *   says BORROWED: then the object it came from owns it, and it stays valid until that
 *   object is freed or changed (mp_value_at, mp_args_get_str, mp_result_get, ...).
 * - What you pass in stays yours: values, strings and bytes are copied when kept (pool
 *   inputs, initargs, arguments); objects added to an mp_args are referenced, not owned.
 *   The exceptions take ownership even when they fail: mp_value_append, mp_value_dict_set.
 *
 * THREADS
 * - Any thread may call any function; what one thread may do to an object while another
 *   uses it depends on the object:
 *   shared freely:  mp_pool, mp_result, mp_imap, mp_queue (a local queue or a manager's
 *                   proxy), mp_lock, mp_rlock, mp_cond, mp_sem, mp_event, mp_barrier,
 *                   mp_plock, mp_psem, mp_pevent, mp_shared (through its lock), mp_tls,
 *                   mp_manager (mp_manager_shutdown from any thread ends a serve),
 *                   mp_manager_client;
 *   one sender and one receiver at a time: mp_conn;
 *   one thread at a time:  mp_process, mp_popen, mp_args, mp_thread, and mp_value while
 *                   anyone changes it (values that nobody changes may be read by many);
 *   mp_shm's memory is yours to synchronise. Freeing an object while another thread uses
 *   it is never allowed.
 * - Errors are per thread: mp_last_error() is the calling thread's.
 *
 * Strings are UTF-8 everywhere (converted to UTF-16 at the Windows boundary). */
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

/* mingw-w64's GCC checks formats against msvcrt's printf unless told gnu_printf (the C99
 * printf that __USE_MINGW_ANSI_STDIO selects); Clang knows no gnu_printf and checks C99. */
#if defined(__MINGW32__) && !defined(__clang__)
#  define MP_PRINTF(f, a) __attribute__((format(gnu_printf, f, a)))
#elif defined(__GNUC__)
#  define MP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#  define MP_PRINTF(f, a)
#endif

/* MP_VERSION_MAJOR, _MINOR, _PATCH and MP_VERSION_STRING, generated from the build's
 * project(VERSION): the one place the version is written. */
#include "multiproc_version.h"

/* ---- errors and timeouts (see the rules at the top) --------------------------------- */

/* Block until done (in a call's timeout_ms). */
#define MP_FOREVER (-1)
/* In an option field that limits a time: no limit (the same value as MP_FOREVER). */
#define MP_NO_LIMIT MP_FOREVER
/* Use the default: in an option field, the field's default (as 0 does); in a call that has
 * one, the object's default timeout (mp_popen_wait, mp_popen_communicate, ...). */
#define MP_DEFAULT_TIMEOUT (-2)

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
  MP_EEXIT = -23,      /* a checked command ran but exited non-zero (CalledProcessError) */
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
MP_API int mp_set_error(int code, const char *fmt, ...) MP_PRINTF(2, 3);
/** Frees a buffer that the library allocated for the caller. */
MP_API void mp_free(void *ptr);

/* ---- process utilities ------------------------------------------------------------- */

/** Returns the calling process's id. */
MP_API int64_t mp_getpid(void);
/** Returns a monotonic clock reading in nanoseconds (for timing, never wall time). */
MP_API uint64_t mp_monotonic_ns(void);
/** Fills buf with len cryptographically random bytes from the OS. */
MP_API int mp_random_bytes(void *buf, size_t len);
/** Sleeps for at least ms milliseconds (nothing if ms <= 0); signals do not cut it short. */
MP_API void mp_sleep_ms(int ms);

/* ---- opaque types ------------------------------------------------------------------ */

typedef struct mp_args mp_args;       /* a typed argument list for a child's target */
typedef struct mp_process mp_process; /* a child process running a function */
typedef struct mp_conn mp_conn;       /* one end of a Pipe */
typedef struct mp_value mp_value;     /* a typed value: nil, bool, int, float, str, bytes,
                                         list, tuple, dict */

/* ---- values (value.c) -------------------------------------------------------------- */
/* A typed value tree, sent over connections as MessagePack (tuple as extension type 16).
 * Ownership: containers own their items. The constructors are the one exception to the
 * int-return rule: they return the new value, or NULL on failure (out of memory, or
 * invalid input such as bad UTF-8) with mp_last_error_code() set to MP_ENOMEM/MP_EINVAL.
 * Adding to a container always takes ownership of the item, even on failure (a NULL item
 * is refused with the code of the failed constructor), so calls can be nested:
 * mp_value_append(list, mp_value_int(7)). */

typedef enum mp_value_type {
  MP_VALUE_NIL = 0,
  MP_VALUE_BOOL,
  MP_VALUE_INT,    /* int64_t */
  MP_VALUE_DOUBLE, /* double */
  MP_VALUE_STR,    /* UTF-8 text, may contain NUL */
  MP_VALUE_BYTES,  /* raw bytes */
  MP_VALUE_LIST,
  MP_VALUE_TUPLE,
  MP_VALUE_DICT, /* ordered (key, value) pairs; keys of any type */
} mp_value_type;

/* Nesting deeper than this many containers is refused by encode (MP_EINVAL) and decode
 * (MP_EPROTO). */
#define MP_VALUE_MAX_DEPTH 32

/** Returns a new nil (None) value, or NULL if out of memory. */
MP_API mp_value *mp_value_nil(void);
/** Returns a new boolean (any non-zero is true), or NULL if out of memory. */
MP_API mp_value *mp_value_bool(int b);
/** Returns a new 64-bit integer, or NULL if out of memory. */
MP_API mp_value *mp_value_int(int64_t i);
/** Returns a new double, or NULL if out of memory. */
MP_API mp_value *mp_value_double(double d);
/** Returns a copy of a NUL-terminated UTF-8 string, or NULL (bad UTF-8: MP_EINVAL). */
MP_API mp_value *mp_value_str(const char *s);
/** Returns a copy of len bytes of UTF-8 text (may hold NULs), or NULL (bad UTF-8: MP_EINVAL). */
MP_API mp_value *mp_value_strn(const char *s, size_t len);
/** Returns a copy of len raw bytes (data may be NULL when len is 0), or NULL. */
MP_API mp_value *mp_value_bytes(const void *data, size_t len);
/** Returns a new empty list, or NULL if out of memory. */
MP_API mp_value *mp_value_list(void);
/** Returns a new empty tuple, or NULL if out of memory. */
MP_API mp_value *mp_value_tuple(void);
/** Returns a new empty dict, or NULL if out of memory. */
MP_API mp_value *mp_value_dict(void);
/** Returns a deep copy of v (yours), or NULL (v is NULL: MP_EINVAL; out of memory). */
MP_API mp_value *mp_value_copy(const mp_value *v);
/** Frees a value and everything it contains; NULL is ignored. */
MP_API void mp_value_free(mp_value *v);

/** Appends item (owned from now on, even on failure) to a list or tuple. */
MP_API int mp_value_append(mp_value *seq, mp_value *item);
/** Sets dict[key] = val (both owned from now on, even on failure); an equal key keeps its
 * place and gets the new value, as in a Python dict. Linear in the dict's size. */
MP_API int mp_value_dict_set(mp_value *dict, mp_value *key, mp_value *val);

/** Returns the value's mp_value_type, or MP_EINVAL for NULL. */
MP_API int mp_value_type_of(const mp_value *v);
/** Reads a boolean (MP_EINVAL if v is not one). */
MP_API int mp_value_get_bool(const mp_value *v, int *b);
/** Reads an integer (MP_EINVAL if v is not one). */
MP_API int mp_value_get_int(const mp_value *v, int64_t *i);
/** Reads a double (MP_EINVAL if v is not one). */
MP_API int mp_value_get_double(const mp_value *v, double *d);
/** Reads a string (borrowed, NUL-terminated; len excludes the NUL; len may be NULL). */
MP_API int mp_value_get_str(const mp_value *v, const char **s, size_t *len);
/** Reads bytes (borrowed; data is never NULL, len may be 0). */
MP_API int mp_value_get_bytes(const mp_value *v, const void **data, size_t *len);
/** Reads the number of items of a list, tuple or dict (or bytes of a str/bytes value). */
MP_API int mp_value_len(const mp_value *v, size_t *len);
/** Reads item i of a list or tuple (borrowed); MP_EINVAL if i is out of range. */
MP_API int mp_value_at(const mp_value *seq, size_t i, mp_value **item);
/** Reads pair i of a dict in insertion order (borrowed; key or val may be NULL). */
MP_API int mp_value_dict_at(const mp_value *dict, size_t i, mp_value **key, mp_value **val);
/** Looks up the value for key (borrowed); MP_ENOENT if there is none. */
MP_API int mp_value_dict_get(const mp_value *dict, const mp_value *key, mp_value **val);
/** Returns 1 if a and b have the same type and contents (dicts: same pairs in the same
 * order; doubles compare with ==, so NaN differs from itself), else 0. */
MP_API int mp_value_equal(const mp_value *a, const mp_value *b);
/** Encodes v as MessagePack into a new buffer (free with mp_free). */
MP_API int mp_value_encode(const mp_value *v, void **buf, size_t *len);
/** Decodes exactly one MessagePack value filling buf[0..len); malformed, truncated or
 * too deeply nested input, trailing bytes or unknown extension types give MP_EPROTO. */
MP_API int mp_value_decode(const void *buf, size_t len, mp_value **v);

/* ---- pipes and connections (connection.c) ------------------------------------------- */
/* A connection carries whole messages (byte strings) with the framing of Python's
 * multiprocessing.connection on sockets: a 4-byte big-endian signed length, or -1 and an
 * 8-byte big-endian length for messages above 2 GiB - 1. One thread at a time may send,
 * and one at a time may receive, on a connection. */

/* Default largest message mp_conn_recv accepts: 256 MiB. */
#define MP_CONN_DEFAULT_MAX_MESSAGE ((size_t)256 * 1024 * 1024)

/** Creates a connected pair, like multiprocessing.Pipe(duplex). duplex != 0: both ends
 * send and receive; duplex == 0: *a only receives and *b only sends. */
MP_API int mp_pipe(mp_conn **a, mp_conn **b, int duplex);
/** Sends one message of len bytes (buf may be NULL when len is 0). Blocks until it is
 * written; a peer that is gone gives MP_EBROKEN (never SIGPIPE). */
MP_API int mp_conn_send(mp_conn *c, const void *buf, size_t len);
/** Receives one message into a new buffer (free with mp_free; never NULL on success).
 * MP_ETIMEDOUT keeps what arrived so far for the next call; MP_EEOF: the peer closed
 * between messages; MP_EBROKEN: it vanished mid-message; MP_EPROTO: a bad or too large
 * length prefix (a too large message is skipped, unread and unallocated, by later calls). */
MP_API int mp_conn_recv(mp_conn *c, void **buf, size_t *len, int timeout_ms);
/** Sends a typed value (MessagePack, see mp_value_encode). */
MP_API int mp_conn_send_value(mp_conn *c, const mp_value *v);
/** Receives a typed value (free with mp_value_free); undecodable messages give MP_EPROTO. */
MP_API int mp_conn_recv_value(mp_conn *c, mp_value **v, int timeout_ms);
/** Returns 1 if a message (or the peer's close) is ready to receive, 0 if nothing
 * arrived within timeout_ms, or a negative error. */
MP_API int mp_conn_poll(mp_conn *c, int timeout_ms);
/** Sets the largest message mp_conn_recv accepts (at least 1). */
MP_API int mp_conn_set_max_message(mp_conn *c, size_t max_bytes);
/** Returns the largest message mp_conn_recv accepts. */
MP_API size_t mp_conn_max_message(const mp_conn *c);
/** Returns 1 if the connection can receive, 0 if not (or if it is closed or NULL). */
MP_API int mp_conn_readable(const mp_conn *c);
/** Returns 1 if the connection can send, 0 if not (or if it is closed or NULL). */
MP_API int mp_conn_writable(const mp_conn *c);
/** Closes the OS handle; later calls give MP_ECLOSED. Closing twice is harmless. */
MP_API int mp_conn_close(mp_conn *c);
/** Closes (if needed) and frees the connection; NULL is ignored. */
MP_API void mp_conn_free(mp_conn *c);

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
/* The arguments of a process's target or of a pool task (mp_pool_apply_args): a tuple of
 * values plus objects (connections, queues, locks, shared memory). Values are copied in;
 * objects are referenced, and the receiving process gets its own handle on each. A value
 * may be any mp_value, a list or dict too (mp_args_add_value). */

typedef enum mp_arg_type {
  MP_ARG_NIL = 0,
  MP_ARG_BOOL,
  MP_ARG_INT,
  MP_ARG_DOUBLE,
  MP_ARG_STR,
  MP_ARG_BYTES,
  MP_ARG_CONN,
  MP_ARG_OBJECT, /* another passable object (queue, lock, shared memory) */
  MP_ARG_LIST,   /* a value argument holding a list (mp_args_get_value) */
  MP_ARG_TUPLE,  /* ... a tuple */
  MP_ARG_DICT,   /* ... a dict */
} mp_arg_type;

/* The most arguments one list holds (more is MP_EINVAL, and MP_EPROTO when decoded). */
#define MP_ARGS_MAX 4096

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
/** Appends a copy of v, which may be any value (a list, tuple or dict too). */
MP_API int mp_args_add_value(mp_args *args, const mp_value *v);
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
/** Reads value argument i of any value type (borrowed: valid while args lives); MP_EINVAL
 * for a connection or another object. */
MP_API int mp_args_get_value(const mp_args *args, size_t i, const mp_value **v);
/** Reads argument i as a connection (borrowed: valid while the target runs). */
MP_API int mp_args_get_conn(const mp_args *args, size_t i, mp_conn **conn);

/* ---- processes (process.c) ---------------------------------------------------------- */

/* A process's target: runs in the child; its return value becomes the exit code. */
typedef int (*mp_target_fn)(mp_args *args);

typedef enum mp_start_method {
  MP_START_DEFAULT = 0,    /* the process-wide default (fork on POSIX, spawn on Windows) */
  MP_START_FORK = 1,       /* POSIX only: fork and call the target, no exec */
  MP_START_SPAWN = 2,      /* re-execute this program, which runs the target from mp_init */
  MP_START_FORKSERVER = 3, /* POSIX only: a server, a fresh run of this program started at
                              mp_init if chosen by then, else on first use, forks each
                              child; MP_ENOTSUP on Windows */
} mp_start_method;

typedef struct mp_process_opts {
  const char *name;       /* NULL: "Process-N" */
  int daemon;             /* terminated at mp_shutdown instead of joined */
  int detached;           /* may outlive this process (no parent-death kill) */
  mp_start_method method; /* MP_START_DEFAULT: see mp_set_start_method */
  int start_timeout_ms;   /* spawn, forkserver: how long the child may take to reach mp_init
                             (forkserver: or the server to answer); 0 or
                             MP_DEFAULT_TIMEOUT: 30 s (always bounded: see the top) */
} mp_process_opts;

/* The fork server's initialisation (mp_set_forkserver_preload): runs once in the server,
 * before it forks any child; 0 on success, anything else keeps the server from starting. */
typedef int (*mp_preload_fn)(void);

/** Must be the first line of main: in a spawned child it runs the target and exits. */
MP_API int mp_init(int *argc, char ***argv);
/** Terminates daemon children and joins the others (mp_init arranges it at exit). */
MP_API void mp_shutdown(void);
/** Sets the process-wide start method; MULTIPROC_START_METHOD=fork|spawn|forkserver
 * overrides it. */
MP_API int mp_set_start_method(mp_start_method method);
/** Names the function the fork server runs once before it forks anything (NULL: none);
 * MP_ESTATE while this process's server runs, MP_ENOTSUP on Windows. */
MP_API int mp_set_forkserver_preload(mp_preload_fn fn);
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

/* ---- threads (thread.c) ------------------------------------------------------------- */

typedef struct mp_thread mp_thread;
/* A thread's target, like threading.Thread(target=fn, args=(arg,)). */
typedef void (*mp_thread_fn)(void *arg);

/* The longest thread name, in bytes, without the NUL. */
#define MP_THREAD_NAME_MAX 255

/** Starts a thread running fn(arg); name NULL gives "Thread-N" (N counts from 1). */
MP_API int mp_thread_create(mp_thread **t, mp_thread_fn fn, void *arg, const char *name);
/** Waits for the thread to end without polling: 0, or MP_ETIMEDOUT (it still runs);
 * joining twice is 0; joining oneself is MP_EDEADLK. */
MP_API int mp_thread_join(mp_thread *t, int timeout_ms);
/** Lets the thread run on by itself and frees t (its resources go when it ends). */
MP_API int mp_thread_detach(mp_thread *t);
/** Frees t: a joined thread's record, or a running thread's (which is then detached). */
MP_API void mp_thread_free(mp_thread *t);
/** Returns 1 until the thread's function has returned, then 0. */
MP_API int mp_thread_is_alive(mp_thread *t);
/** Returns the thread's name (owned by t). */
MP_API const char *mp_thread_name(const mp_thread *t);
/** Returns the calling thread's name: "MainThread", an mp_thread's name, or "Dummy-N" for
 * a thread the library did not start (as threading.current_thread().name). */
MP_API const char *mp_thread_current_name(void);
/** Returns the calling thread's OS id (threading.get_native_id()). */
MP_API uint64_t mp_thread_id(void);
/** Returns the number of logical CPUs in the system, at least 1 (os.cpu_count()). */
MP_API int mp_cpu_count(void);

/* ---- locks, conditions, semaphores, events, barriers (sync.c) ----------------------- */

typedef struct mp_lock mp_lock;       /* threading.Lock: not recursive, any thread releases */
typedef struct mp_rlock mp_rlock;     /* threading.RLock: recursive, the owner releases */
typedef struct mp_cond mp_cond;       /* threading.Condition over an mp_lock */
typedef struct mp_sem mp_sem;         /* threading.Semaphore / BoundedSemaphore */
typedef struct mp_event mp_event;     /* threading.Event */
typedef struct mp_barrier mp_barrier; /* threading.Barrier */

/** Creates an unlocked lock. */
MP_API int mp_lock_create(mp_lock **l);
/** Acquires the lock: 0 or MP_ETIMEDOUT; in debug builds re-acquiring from the thread
 * that holds it is MP_EDEADLK instead of a deadlock. */
MP_API int mp_lock_acquire(mp_lock *l, int timeout_ms);
/** Releases the lock (from any thread); MP_ESTATE if it is not locked. */
MP_API int mp_lock_release(mp_lock *l);
/** Returns 1 if the lock is held, 0 if not. */
MP_API int mp_lock_locked(mp_lock *l);
/** Frees the lock. */
MP_API void mp_lock_free(mp_lock *l);

/** Creates an unlocked recursive lock. */
MP_API int mp_rlock_create(mp_rlock **l);
/** Acquires the lock (again, if the calling thread holds it): 0 or MP_ETIMEDOUT. */
MP_API int mp_rlock_acquire(mp_rlock *l, int timeout_ms);
/** Releases one level; MP_EPERM if the calling thread does not hold it. */
MP_API int mp_rlock_release(mp_rlock *l);
/** Returns how many times the calling thread holds the lock (0 if it does not). */
MP_API int mp_rlock_level(mp_rlock *l);
/** Frees the lock. */
MP_API void mp_rlock_free(mp_rlock *l);

/** Creates a condition variable over lock (borrowed; NULL: its own, see mp_cond_lock). */
MP_API int mp_cond_create(mp_cond **c, mp_lock *lock);
/** Returns the condition's lock, to acquire and release around waits and notifies. */
MP_API mp_lock *mp_cond_lock(mp_cond *c);
/** Releases the lock, waits for a notify, re-acquires: 0 (notified) or MP_ETIMEDOUT;
 * MP_ESTATE if the lock is not held. */
MP_API int mp_cond_wait(mp_cond *c, int timeout_ms);
/** Wakes up to n waiting threads, longest waiting first; MP_ESTATE if the lock is not held. */
MP_API int mp_cond_notify(mp_cond *c, int n);
/** Wakes every waiting thread; MP_ESTATE if the lock is not held. */
MP_API int mp_cond_notify_all(mp_cond *c);
/** Frees the condition (and its own lock, if it made one). */
MP_API void mp_cond_free(mp_cond *c);

/* maxvalue for an unbounded semaphore. */
#define MP_SEM_UNBOUNDED 0u

/** Creates a semaphore with the given value; maxvalue > 0 makes it bounded (maxvalue >= value). */
MP_API int mp_sem_create(mp_sem **s, unsigned value, unsigned maxvalue);
/** Takes one unit: 0 or MP_ETIMEDOUT. */
MP_API int mp_sem_acquire(mp_sem *s, int timeout_ms);
/** Gives one unit back; MP_EINVAL if a bounded semaphore would exceed its maxvalue. */
MP_API int mp_sem_release(mp_sem *s);
/** Returns the current value. */
MP_API unsigned mp_sem_value(mp_sem *s);
/** Frees the semaphore. */
MP_API void mp_sem_free(mp_sem *s);

/** Creates an event, initially clear. */
MP_API int mp_event_create(mp_event **e);
/** Sets the event and wakes every waiter. */
MP_API int mp_event_set(mp_event *e);
/** Clears the event. */
MP_API int mp_event_clear(mp_event *e);
/** Returns 1 if the event is set. */
MP_API int mp_event_is_set(mp_event *e);
/** Waits until the event is set: 0 or MP_ETIMEDOUT. */
MP_API int mp_event_wait(mp_event *e, int timeout_ms);
/** Frees the event. */
MP_API void mp_event_free(mp_event *e);

/** Creates a barrier for `parties` threads (at least 1). */
MP_API int mp_barrier_create(mp_barrier **b, unsigned parties);
/** Waits until all parties arrived: returns this thread's arrival index (0..parties-1);
 * MP_ETIMEDOUT breaks the barrier, which makes every waiter return MP_EBROKEN. */
MP_API int mp_barrier_wait(mp_barrier *b, int timeout_ms);
/** Breaks the barrier: current and later waiters get MP_EBROKEN until mp_barrier_reset. */
MP_API int mp_barrier_abort(mp_barrier *b);
/** Returns the barrier to its initial state (waiters still inside get MP_EBROKEN). */
MP_API int mp_barrier_reset(mp_barrier *b);
/** Frees the barrier. */
MP_API void mp_barrier_free(mp_barrier *b);

/* ---- thread-local slots (tls.c) ----------------------------------------------------- */

typedef struct mp_tls mp_tls; /* one attribute of a threading.local() */
/* Runs at a thread's exit for its non-NULL value (any thread, on both systems). */
typedef void (*mp_tls_dtor)(void *value);

/** Creates a slot; dtor may be NULL. */
MP_API int mp_tls_create(mp_tls **key, mp_tls_dtor dtor);
/** Sets the calling thread's value (the previous one is not destroyed). */
MP_API int mp_tls_set(mp_tls *key, void *value);
/** Returns the calling thread's value (NULL if never set). */
MP_API void *mp_tls_get(mp_tls *key);
/** Frees the slot; call it when no other thread still holds a value (see docs/threads.md). */
MP_API void mp_tls_free(mp_tls *key);

/* ---- process-shared lock, semaphore, event (psync.c) -------------------------------- */

typedef struct mp_plock mp_plock;   /* multiprocessing.Lock, robust against dead holders */
typedef struct mp_psem mp_psem;     /* multiprocessing.Semaphore / BoundedSemaphore */
typedef struct mp_pevent mp_pevent; /* multiprocessing.Event */

/** Creates a process-shared lock that children inherit (fork) or receive in mp_args. */
MP_API int mp_plock_create(mp_plock **l);
/** Acquires: 0, MP_ETIMEDOUT, MP_EDEADLK (the calling thread holds it), or MP_EOWNERDEAD
 * (the holder died holding it: the caller now holds it and it is usable again). */
MP_API int mp_plock_acquire(mp_plock *l, int timeout_ms);
/** Releases; MP_EPERM if the calling thread does not hold it. */
MP_API int mp_plock_release(mp_plock *l);
/** Frees this process's handle to the lock. */
MP_API void mp_plock_free(mp_plock *l);

/** Creates a process-shared semaphore; maxvalue > 0 makes it bounded (maxvalue >= value). */
MP_API int mp_psem_create(mp_psem **s, unsigned value, unsigned maxvalue);
/** Takes one unit: 0 or MP_ETIMEDOUT. */
MP_API int mp_psem_acquire(mp_psem *s, int timeout_ms);
/** Gives one unit back; MP_EINVAL if a bounded semaphore would exceed its maxvalue. */
MP_API int mp_psem_release(mp_psem *s);
/** Stores the number of free units now, a snapshot (Python's Semaphore.get_value). */
MP_API int mp_psem_get_value(mp_psem *s, unsigned *value);
/** Frees this process's handle to the semaphore. */
MP_API void mp_psem_free(mp_psem *s);

/** Creates a process-shared event, initially clear. */
MP_API int mp_pevent_create(mp_pevent **e);
/** Sets the event and wakes every waiter in every process. */
MP_API int mp_pevent_set(mp_pevent *e);
/** Clears the event. */
MP_API int mp_pevent_clear(mp_pevent *e);
/** Returns 1 if the event is set, 0 if not. */
MP_API int mp_pevent_is_set(mp_pevent *e);
/** Waits until the event is set: 0 or MP_ETIMEDOUT. */
MP_API int mp_pevent_wait(mp_pevent *e, int timeout_ms);
/** Frees this process's handle to the event. */
MP_API void mp_pevent_free(mp_pevent *e);

/* ---- shared memory, Value and Array (shm.c) ----------------------------------------- */

typedef struct mp_shm mp_shm;       /* anonymous shared memory, zero-filled */
typedef struct mp_shared mp_shared; /* Value / Array: typed elements in shared memory + lock */

/** Creates size bytes (> 0) of zeroed shared memory that children inherit or receive. */
MP_API int mp_shm_create(mp_shm **m, size_t size);
/** Gives the mapping's address and size (either pointer may be NULL). */
MP_API int mp_shm_map(mp_shm *m, void **addr, size_t *size);
/** Unmaps and frees this process's handle (other processes keep theirs). */
MP_API void mp_shm_free(mp_shm *m);

typedef enum mp_shared_type { MP_SHARED_INT64 = 1, MP_SHARED_DOUBLE = 2 } mp_shared_type;

/** Creates an Array of n zeroed elements (n >= 1) with its own process-shared lock;
 * n == 1 is a Value, like multiprocessing.Value('q', 0). */
MP_API int mp_shared_create(mp_shared **s, mp_shared_type type, size_t n);
/** Returns the element type. */
MP_API mp_shared_type mp_shared_kind(const mp_shared *s);
/** Returns the number of elements. */
MP_API size_t mp_shared_len(const mp_shared *s);
/** Returns the elements (int64_t[] or double[]); hold mp_shared_lock while changing them. */
MP_API void *mp_shared_data(mp_shared *s);
/** Returns the lock that guards the elements (get_lock()). */
MP_API mp_plock *mp_shared_lock(mp_shared *s);
/** Reads int64 element i under the lock (MP_EINVAL: bad index, or double elements). */
MP_API int mp_shared_get_int(mp_shared *s, size_t i, int64_t *value);
/** Reads double element i under the lock (MP_EINVAL: bad index, or int64 elements). */
MP_API int mp_shared_get_double(mp_shared *s, size_t i, double *value);
/** Writes int64 element i under the lock. */
MP_API int mp_shared_set_int(mp_shared *s, size_t i, int64_t value);
/** Writes double element i under the lock. */
MP_API int mp_shared_set_double(mp_shared *s, size_t i, double value);
/** Adds delta to int64 element i under the lock (wrapping like a C int64 in ctypes);
 * stores the new value in result unless it is NULL. */
MP_API int mp_shared_add_int(mp_shared *s, size_t i, int64_t delta, int64_t *result);
/** Adds delta to double element i under the lock; stores the new value unless NULL. */
MP_API int mp_shared_add_double(mp_shared *s, size_t i, double delta, double *result);
/** Frees this process's handles. */
MP_API void mp_shared_free(mp_shared *s);

/* ---- passing process-shared objects to children (psync_args.c) ---------------------- */
/* The child gets its own handle to the same object: borrowed, valid while its target runs.
 * The caller keeps owning what it adds. */
/** Appends a process-shared lock. */
MP_API int mp_args_add_plock(mp_args *args, mp_plock *l);
/** Reads argument i as a process-shared lock (MP_EINVAL if it is another type). */
MP_API int mp_args_get_plock(const mp_args *args, size_t i, mp_plock **l);
/** Appends a process-shared semaphore. */
MP_API int mp_args_add_psem(mp_args *args, mp_psem *s);
/** Reads argument i as a process-shared semaphore. */
MP_API int mp_args_get_psem(const mp_args *args, size_t i, mp_psem **s);
/** Appends a process-shared event. */
MP_API int mp_args_add_pevent(mp_args *args, mp_pevent *e);
/** Reads argument i as a process-shared event. */
MP_API int mp_args_get_pevent(const mp_args *args, size_t i, mp_pevent **e);
/** Appends shared memory. */
MP_API int mp_args_add_shm(mp_args *args, mp_shm *m);
/** Reads argument i as shared memory. */
MP_API int mp_args_get_shm(const mp_args *args, size_t i, mp_shm **m);
/** Appends a Value/Array (its lock travels with it). */
MP_API int mp_args_add_shared(mp_args *args, mp_shared *s);
/** Reads argument i as a Value/Array. */
MP_API int mp_args_get_shared(const mp_args *args, size_t i, mp_shared **s);
/* ---- pools (pool.c) ------------------------------------------------------------------ */
/* multiprocessing.Pool: worker processes that run tasks. The master (a thread of the
 * pool's creator) talks to each worker over its own connection and schedules the work
 * itself, so a worker that dies holds nothing the others need: the task it was running
 * fails with MP_EWORKER, the tasks queued behind it are run by others, and a new worker
 * takes its place. Inputs and outputs are mp_values (MessagePack on the wire); functions
 * travel like process targets, so they need no registration. */

typedef struct mp_pool mp_pool;     /* a pool of worker processes */
typedef struct mp_result mp_result; /* the pending result of mp_pool_apply_async */
typedef struct mp_imap mp_imap;     /* the results of mp_pool_imap_unordered */

/* A task: reads input (nil when none was given), may set *output (NULL means nil), and
 * returns 0, or non-zero for failure; a message set with mp_set_error travels back with
 * MP_ETASK. Runs in a worker process. */
typedef int (*mp_task_fn)(const mp_value *input, mp_value **output);
/* A starmap task: the items of one input tuple or list, as separate arguments. */
typedef int (*mp_star_fn)(mp_value *const *args, size_t nargs, mp_value **output);
/* A task that takes an argument list: values and objects (queues, connections, locks,
 * shared memory), as a process target does (mp_pool_apply_args). args is valid while it
 * runs; its objects are the worker's own handles on the caller's. */
typedef int (*mp_args_task_fn)(mp_args *args, mp_value **output);
/* Runs once in each worker before its first task; non-zero fails the pool's start-up. */
typedef int (*mp_pool_init_fn)(const mp_value *initargs);
/* Runs in the creating process (on the pool's thread) when a result becomes ready; it must
 * not wait on the pool. */
typedef void (*mp_result_cb)(mp_result *result, void *arg);

typedef struct mp_pool_opts {
  mp_start_method method;      /* MP_START_DEFAULT: see mp_set_start_method */
  mp_pool_init_fn initializer; /* NULL: none */
  const mp_value *initargs;    /* copied; NULL: nil */
  int maxtasksperchild;        /* a worker is replaced after this many tasks; 0: never */
  int task_timeout_ms;         /* a task running longer is killed with its worker and fails
                                  with MP_ETIMEDOUT; 0 or MP_NO_LIMIT: no limit */
} mp_pool_opts;

/* Options of mp_pool_map_ex; a zeroed struct is the defaults. */
typedef struct mp_map_opts {
  size_t chunksize; /* inputs per task; 0: n / (4 * workers), rounded up, as Python */
  int timeout_ms;   /* for the whole map; 0 or MP_NO_LIMIT: none */
} mp_map_opts;

/** Starts nworkers workers (0: mp_cpu_count()) and waits until each ran its initializer;
 * opts may be NULL. */
MP_API int mp_pool_create(mp_pool **pool, int nworkers, const mp_pool_opts *opts);
/** Queues fn(input) (input is copied; NULL: nil) and returns its pending result. */
MP_API int mp_pool_apply_async(mp_pool *pool, mp_task_fn fn, const mp_value *input,
                               mp_result **result);
/** Like mp_pool_apply_async; cb(result, arg) runs in this process once it is ready. */
MP_API int mp_pool_apply_async_cb(mp_pool *pool, mp_task_fn fn, const mp_value *input,
                                  mp_result_cb cb, void *arg, mp_result **result);
/** Runs fn(input) in a worker and waits: *output (may be NULL) is yours to free. */
MP_API int mp_pool_apply(mp_pool *pool, mp_task_fn fn, const mp_value *input, mp_value **output);
/** Queues fn(args) and returns its pending result. args is copied and its objects' handles
 * duplicated at once, so the caller may free both right after. */
MP_API int mp_pool_apply_args_async(mp_pool *pool, mp_args_task_fn fn, const mp_args *args,
                                    mp_result **result);
/** Runs fn(args) in a worker and waits: *output (may be NULL) is yours to free. */
MP_API int mp_pool_apply_args(mp_pool *pool, mp_args_task_fn fn, const mp_args *args,
                              mp_value **output);
/** outputs[i] = fn(inputs[i]) for i < n, in order, sent in chunks of chunksize inputs (0:
 * n / (4 * workers), rounded up). On failure every output is NULL and the error of the
 * lowest failed index is returned. The outputs are the caller's to free. */
MP_API int mp_pool_map(mp_pool *pool, mp_task_fn fn, const mp_value *const *inputs, size_t n,
                       size_t chunksize, mp_value **outputs);
/** outputs[i] = fn(inputs[i]) with per-item results and an optional timeout (opts may be
 * NULL): codes[i] (codes may be NULL) receives 0 or item i's error, and every item that
 * succeeded keeps its output even when others failed; failed items' outputs are NULL. On
 * timeout what finished in time is kept and the rest is MP_ETIMEDOUT: tasks not yet sent
 * are cancelled, running ones finish in the workers and are dropped. Returns 0, MP_ETIMEDOUT,
 * or the error of the lowest failed index. The outputs are yours to free in every case. */
MP_API int mp_pool_map_ex(mp_pool *pool, mp_task_fn fn, const mp_value *const *inputs, size_t n,
                          const mp_map_opts *opts, mp_value **outputs, int *codes);
/** Like mp_pool_map with each input a tuple or list whose items become fn's arguments. */
MP_API int mp_pool_starmap(mp_pool *pool, mp_star_fn fn, const mp_value *const *inputs, size_t n,
                           size_t chunksize, mp_value **outputs);
/** Queues fn over inputs like mp_pool_map; mp_imap_next gives the results as they finish. */
MP_API int mp_pool_imap_unordered(mp_pool *pool, mp_task_fn fn, const mp_value *const *inputs,
                                  size_t n, size_t chunksize, mp_imap **it);
/** Stops accepting work; queued work still runs. */
MP_API int mp_pool_close(mp_pool *pool);
/** After close: waits until the queued work is done and the workers have exited: 0 or
 * MP_ETIMEDOUT; MP_ESTATE if the pool is still open. */
MP_API int mp_pool_join(mp_pool *pool, int timeout_ms);
/** Kills the workers now; pending results fail with MP_ECANCELED. */
MP_API int mp_pool_terminate(mp_pool *pool);
/** Returns the number of workers the pool keeps running. */
MP_API int mp_pool_size(const mp_pool *pool);
/** Stores the pids of the current workers (up to max) and their number in *n. */
MP_API int mp_pool_pids(mp_pool *pool, int64_t *pids, size_t max, size_t *n);
/** Terminates the pool unless it was joined, and frees it (results stay valid). */
MP_API void mp_pool_free(mp_pool *pool);

/** Waits for the result: 0 or MP_ETIMEDOUT. */
MP_API int mp_result_wait(mp_result *r, int timeout_ms);
/** Waits and gives the output, BORROWED: r owns it and mp_result_free frees it (may be NULL;
 * use mp_result_take to own it): 0, MP_ETIMEDOUT, or the task's failure (MP_ETASK,
 * MP_EWORKER, MP_ETIMEDOUT, MP_ECANCELED) with its message. */
MP_API int mp_result_get(mp_result *r, mp_value **value, int timeout_ms);
/** Waits and takes the output: *value (may be NULL) is yours to free, as from mp_pool_apply;
 * r keeps nothing, and a later get or take is MP_ESTATE. Errors as mp_result_get. */
MP_API int mp_result_take(mp_result *r, mp_value **value, int timeout_ms);
/** Returns 1 if the result is ready, 0 if not. */
MP_API int mp_result_ready(mp_result *r);
/** Returns 1 if the task succeeded, 0 if it failed, MP_ESTATE if it is not ready. */
MP_API int mp_result_successful(mp_result *r);
/** Frees the result (a pending task still runs; its output is dropped). */
MP_API void mp_result_free(mp_result *r);

/** Gives the next finished result in completion order: 0 with *index (may be NULL) and
 * *value (the caller's to free; may be NULL); the item's failure with *index set; MP_EEOF
 * once every result was given; MP_ETIMEDOUT. */
MP_API int mp_imap_next(mp_imap *it, size_t *index, mp_value **value, int timeout_ms);
/** Frees the iterator (unfinished tasks still run; their outputs are dropped). */
MP_API void mp_imap_free(mp_imap *it);

/* ---- subprocesses (popen.c) --------------------------------------------------------- */
/* External commands, like Python's subprocess. argv is a NULL-terminated array of UTF-8
 * strings and is never handed to a shell: only mp_run_shell and mp_popen_create_shell do
 * that. */

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

/* mp_popen_opts.search_path: never search PATH for argv[0]. */
#define MP_NO_SEARCH_PATH (-1)

typedef struct mp_popen_opts {
  mp_stdio std_in, std_out, std_err; /* zero: inherit all three */
  const char *cwd;                   /* NULL: the parent's */
  /* NULL-terminated list. With env_replace = 0 it edits the parent's environment:
   * "NAME=value" sets, "NAME" (no '=') removes. With env_replace = 1 it is the child's whole
   * environment ("NAME=value" entries only). Names compare case-insensitively on Windows. */
  const char *const *env;
  int env_replace;
  int search_path;       /* 0 (default) or 1: when argv[0] holds no directory separator,
                            look it up in PATH like Python (the child's PATH; PATHEXT and the
                            system directories on Windows); MP_NO_SEARCH_PATH: run argv[0]
                            as a path relative to the working directory */
  int new_process_group; /* POSIX: setpgid(0,0), so kill_tree reaches the whole group;
                            Windows: CREATE_NEW_PROCESS_GROUP */
  int detached;          /* POSIX: new session (setsid); Windows: DETACHED_PROCESS, outside
                            the job; free() never waits for it */
  int timeout_ms;        /* default timeout for mp_run and for calls given
                            MP_DEFAULT_TIMEOUT; 0 or MP_NO_LIMIT: none */
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
/** Like mp_popen_create, but hands cmdline to the system shell as mp_run_shell does (/bin/sh
 * -c on POSIX, cmd.exe /d /s /c on Windows); never build cmdline from untrusted input. */
MP_API int mp_popen_create_shell(mp_popen **p, const char *cmdline, const mp_popen_opts *opts);
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
 * non-zero exit is MP_EEXIT ("command 'x' returned non-zero exit status N", as Python's
 * CalledProcessError), and *out still holds the output; *out is set (maybe NULL) whatever the
 * result. A program that cannot start is MP_ENOENT/MP_EPERM as in mp_popen_create. */
MP_API int mp_check_output(const char *const *argv, const mp_popen_opts *opts, char **out,
                           size_t *out_len);

/* ---- queues (queue.c) ------------------------------------------------------------------ */

/* A queue between processes (mp_queue_create), or a proxy for a queue that a manager
 * serves (mp_manager_queue): the same calls work on both. */
typedef struct mp_queue mp_queue;

/* The local queue (queue_local.c): a ring in shared memory, robust against a process that
 * is killed at any moment (see docs/queue.md for exactly what is guaranteed). */
typedef struct mp_queue_opts {
  size_t maxsize;     /* most messages queued at once; 0: bounded only by the ring's bytes */
  size_t max_message; /* largest message in bytes; 0: MP_CONN_DEFAULT_MAX_MESSAGE */
  size_t ring_size;   /* bytes of shared ring (rounded up to a power of two, 4 KiB..1 GiB);
                         0: MP_QUEUE_DEFAULT_RING. Larger messages pass through it in parts */
  int joinable;       /* JoinableQueue: enables task_done / join */
} mp_queue_opts;

#define MP_QUEUE_DEFAULT_RING ((size_t)1024 * 1024)

/** Creates a queue between processes; maxsize 0 means no message-count bound. */
MP_API int mp_queue_create(mp_queue **q, size_t maxsize);
/** Creates a JoinableQueue (task_done / join). */
MP_API int mp_joinable_queue_create(mp_queue **q, size_t maxsize);
/** Creates a queue with options (opts may be NULL: the defaults). */
MP_API int mp_queue_create_ex(mp_queue **q, const mp_queue_opts *opts);
/** Appends a queue: the child gets its own handle on the same queue (fork and spawn). */
MP_API int mp_args_add_queue(mp_args *args, mp_queue *q);
/** Reads argument i as a queue (borrowed: valid while the target runs). */
MP_API int mp_args_get_queue(const mp_args *args, size_t i, mp_queue **q);

/** Puts a copy of len bytes (0 is a legal message): 0, MP_EFULL on timeout, MP_ECLOSED. */
MP_API int mp_queue_put(mp_queue *q, const void *buf, size_t len, int timeout_ms);
/** Gets the next message into *buf (free with mp_free): 0, MP_EEMPTY on timeout, or
 * MP_EEOF once the queue is closed and drained. */
MP_API int mp_queue_get(mp_queue *q, void **buf, size_t *len, int timeout_ms);
/** Puts a typed value. */
MP_API int mp_queue_put_value(mp_queue *q, const mp_value *v, int timeout_ms);
/** Gets a typed value (free with mp_value_free). */
MP_API int mp_queue_get_value(mp_queue *q, mp_value **v, int timeout_ms);
/** Stores the approximate number of queued messages. */
MP_API int mp_queue_qsize(mp_queue *q, size_t *n);
/** Returns 1 if the queue looks empty, 0 if not, or a negative error. */
MP_API int mp_queue_empty(mp_queue *q);
/** Returns 1 if the queue looks full, 0 if not, or a negative error. */
MP_API int mp_queue_full(mp_queue *q);
/** Closes the queue for puts; getters drain what is left, then get MP_EEOF. */
MP_API int mp_queue_close(mp_queue *q);
/** JoinableQueue: marks one gotten message as processed (too many calls: MP_EINVAL). */
MP_API int mp_queue_task_done(mp_queue *q);
/** JoinableQueue: waits until every put message was marked done: 0 or MP_ETIMEDOUT. */
MP_API int mp_queue_join(mp_queue *q, int timeout_ms);
/** Waits until the queue's store confirmed every put and task_done this handle sent without
 * waiting (a Redis queue with pipeline > 0): 0, or the first refusal; 0 at once elsewhere. */
MP_API int mp_queue_flush(mp_queue *q, int timeout_ms);
/** Frees this process's handle on the queue (other processes keep theirs). */
MP_API void mp_queue_free(mp_queue *q);

/* ---- Redis-backed queues (redis_queue.c; docs/redis.md) ------------------------------ */
/* A queue kept in a Redis server (6.2 or later) that producers and consumers on any machine
 * reach by URL: redis://[[user]:password@]host[:port][/db], or rediss:// for TLS where the
 * build has it (Linux; MP_ENOTSUP elsewhere). The same mp_queue_* calls work on it. A plain
 * queue's get removes the message (at-most-once); a joinable queue's message stays with its
 * consumer until task_done and goes to another consumer if that one is silent for lease_ms
 * (at-least-once). Redis unreachable: MP_EBROKEN once reconnect_ms (or the call's own
 * timeout) has passed; the handle reconnects on its next call. Without hiredis at build
 * time (MP_WITH_REDIS=OFF) the calls give MP_ENOTSUP. */

typedef struct mp_redis_opts {
  int joinable;           /* JoinableQueue: task_done/join, at-least-once delivery */
  int connect_timeout_ms; /* one connection attempt (TLS and AUTH included); 0: 5000 */
  int io_timeout_ms;      /* a reply later than this (beyond a blocking wait) means the
                             connection is lost; 0: 10000 */
  int reconnect_ms;       /* how long a call keeps trying to reach a lost Redis; 0: 30000 */
  int lease_ms;           /* joinable: a consumer silent this long is taken for dead and its
                             unfinished messages go to others; 0: 10000 (at least 100) */
  size_t prefetch;        /* messages one get may take from Redis at once (the rest wait in
                             this handle for the next gets); 0: 1, at most 256 */
  size_t pipeline;        /* puts and task_dones sent before one waits for Redis to confirm
                             (mp_queue_flush confirms them all); 0: each call waits */
  size_t max_message;     /* largest message; 0: MP_CONN_DEFAULT_MAX_MESSAGE */
  const char *consumer;   /* this handle's consumer name in the group (printable, no spaces
                             or braces, at most 100 bytes); NULL: a unique one */
  const char *tls_ca_file; /* rediss://: CA certificates (PEM) to check the server with;
                              NULL: the system's */
} mp_redis_opts;

/** Opens (creating it in Redis if need be) the queue `name` on the server at url; opts may
 * be NULL. Redis unreachable: MP_EBROKEN; refused AUTH: MP_EAUTH; an ACL without access:
 * MP_EPERM; a plain handle on a joinable queue (or the reverse): MP_EINVAL. */
MP_API int mp_redis_queue_create(mp_queue **q, const char *url, const char *name,
                                 const mp_redis_opts *opts);
/** Deletes the queue `name` from the server (its messages, group and settings). */
MP_API int mp_redis_queue_delete(const char *url, const char *name, int timeout_ms);

/* ---- pools on Redis (redis_pool.c, redis_worker.c; docs/redis.md) ------------------- */
/* A distributed multiprocessing.Pool: mp_redis_pool_create makes an mp_pool whose workers
 * are programs on any machine that reaches the Redis server, each serving in
 * mp_worker_serve (the same program, started in worker mode). Every mp_pool_* call works
 * on it except the argument-list ones (MP_ENOTSUP: objects cannot travel). A worker whose
 * build differs from the caller's refuses a task with MP_ECHILD; a worker that dies (is
 * silent for lease_ms) has its tasks run elsewhere, up to `attempts` runs in all, then they
 * fail with MP_EWORKER naming it; each result reaches the caller once, even when its task
 * ran twice. Without hiredis at build time the calls give MP_ENOTSUP. */

typedef struct mp_redis_pool_opts {
  int workers;            /* the size mp_pool_size reports and default chunk sizes assume;
                             0: 4 (workers come and go: this is not a limit) */
  int attempts;           /* runs of a task whose workers died before it fails with
                             MP_EWORKER; 0: 3 */
  int lease_ms;           /* a worker silent this long is taken for dead; 0: 10000 (at least
                             100) */
  int connect_timeout_ms; /* as mp_redis_opts; 0: 5000 */
  int io_timeout_ms;      /* as mp_redis_opts; 0: 10000 */
  int reconnect_ms;       /* as mp_redis_opts; 0: 30000 */
  const char *tls_ca_file; /* as mp_redis_opts */
} mp_redis_pool_opts;

typedef struct mp_worker_opts {
  const char *worker;     /* this worker's name in messages and in Redis (printable, no
                             spaces, at most 100 bytes); NULL: "worker-<pid>-<random>" */
  size_t batch;           /* tasks taken from Redis at once; 0: 16, at most 256 */
  uint64_t max_tasks;     /* leave (return 0) after this many tasks; 0: never */
  int idle_exit_ms;       /* leave (return 0) after this long without a task; 0: never */
  int connect_timeout_ms; /* as mp_redis_opts; 0: 5000 */
  int io_timeout_ms;      /* as mp_redis_opts; 0: 10000 */
  int reconnect_ms;       /* as mp_redis_opts; 0: 30000 */
  const char *tls_ca_file; /* as mp_redis_opts */
} mp_worker_opts;

/** Makes a pool whose tasks go through the Redis server at url to the workers serving
 * `name` (opts may be NULL): MP_EBROKEN if Redis is unreachable within the timeouts. */
MP_API int mp_redis_pool_create(mp_pool **pool, const char *url, const char *name,
                                const mp_redis_pool_opts *opts);
/** Serves the tasks of the Redis pools `name` at url in this process until max_tasks or
 * idle_exit_ms says to leave (0), or Redis stays unreachable (MP_EBROKEN). */
MP_API int mp_worker_serve(const char *url, const char *name, const mp_worker_opts *opts);

/* ---- managers (manager.c, manager_client.c) ------------------------------------------ */
/* A network manager like Python's multiprocessing.managers.BaseManager, speaking its wire
 * protocol: a C master serves queues that Python workers use, and a C worker uses queues
 * that a Python master serves. Addresses are IPv4 "host:port"; the server listens on all
 * interfaces only for "0.0.0.0:port" or ":port"; port 0 picks a free port (see
 * mp_manager_address). Authkeys are byte strings: NUL-terminated with mp_manager_create and
 * mp_manager_connect (Python's b'abc' is "abc"), or any bytes, NUL included, with a length
 * through mp_manager_create_bytes and mp_manager_connect_bytes. The library's copies of a
 * key are zeroed before their memory is freed. */

typedef struct mp_manager mp_manager;               /* the server side */
typedef struct mp_manager_client mp_manager_client; /* a connection to a server */

typedef struct mp_manager_opts {
  int max_connections;       /* authenticated connections served at once (a thread each);
                                0: 64. More wait, authenticated, until one ends */
  int handshake_timeout_ms;  /* for authentication and the first request; 0 or
                                MP_DEFAULT_TIMEOUT: 5000 ms (always bounded: see the top) */
  size_t max_message;        /* largest request after authentication; 0: 64 MiB. A larger
                                one is skipped and answered with a ValueError */
  int allow_empty_authkey;   /* an empty authkey is refused (MP_EINVAL) unless this is set */
  int allow_remote_shutdown; /* let clients call 'shutdown' (Python's manager.shutdown()) */
  int max_handshakes;        /* connections in the handshake stage at once, all served by one
                                thread; 0: 1024. A new one then drops the oldest */
  size_t max_values;         /* values one request may decode to; 0: 2,097,152. Never more
                                than the request's size in bytes + 262,144 */
} mp_manager_opts;

/* How a manager is doing (mp_manager_get_status). */
typedef struct mp_manager_status {
  int serving;            /* 1 from mp_manager_start until serving ended */
  int ended;              /* why serving ended: MP_MANAGER_RUNNING (not yet),
                             MP_MANAGER_ENDED_SHUTDOWN or MP_MANAGER_ENDED_REMOTE */
  size_t connections;     /* authenticated connections being served now */
  size_t handshakes;      /* connections in the handshake stage, or authenticated and
                             waiting for a serving slot, now */
  uint64_t accepted;      /* connections accepted so far */
  uint64_t auth_failures; /* handshakes refused: a wrong key or a malformed answer */
  uint64_t accept_errors; /* transient failures (accept: EMFILE, ENFILE, ENOMEM...; a serving
                             thread that could not start); serving goes on after each */
  char last_error[256];   /* the last such failure, with the OS error */
} mp_manager_status;

enum { MP_MANAGER_RUNNING = 0, MP_MANAGER_ENDED_SHUTDOWN = 1, MP_MANAGER_ENDED_REMOTE = 2 };

/** Binds address and prepares a server (opts may be NULL); nothing is served before start. */
MP_API int mp_manager_create(mp_manager **m, const char *address, const char *authkey,
                             const mp_manager_opts *opts);
/** Like mp_manager_create with a key of keylen bytes, which may contain NUL bytes. */
MP_API int mp_manager_create_bytes(mp_manager **m, const char *address, const void *authkey,
                                   size_t keylen, const mp_manager_opts *opts);
/** Registers a queue.Queue(maxsize) (0: unbounded) under a name like "get_task_queue". */
MP_API int mp_manager_register_queue(mp_manager *m, const char *name, size_t maxsize);
/** Returns the bound address as "host:port" (the real port when created with port 0). */
MP_API const char *mp_manager_address(const mp_manager *m);
/** Serves in a background thread: 0, or MP_ESTATE if already serving or shut down. */
MP_API int mp_manager_start(mp_manager *m);
/** Serves in the calling thread until mp_manager_shutdown or a permitted remote shutdown. */
MP_API int mp_manager_serve_forever(mp_manager *m);
/** Stops serving: ends every connection and blocked call, waits for them; idempotent. */
MP_API int mp_manager_shutdown(mp_manager *m);
/** Copies the manager's current status into *st (any thread, any time). */
MP_API int mp_manager_get_status(mp_manager *m, mp_manager_status *st);
/** Waits until serving has ended (mp_manager_shutdown, or a permitted remote shutdown):
 * 0, MP_ETIMEDOUT while it still serves, MP_ESTATE if serving never started. */
MP_API int mp_manager_wait(mp_manager *m, int timeout_ms);
/** Shuts down if needed and frees the manager and its queues. */
MP_API void mp_manager_free(mp_manager *m);
/** A direct handle on a registered queue, without the network (free with mp_queue_free
 * before mp_manager_free): the same queue remote clients see. */
MP_API int mp_manager_local_queue(mp_manager *m, const char *name, mp_queue **q);

/** Connects to a manager (C or Python) and checks the authkey: MP_EAUTH on a wrong key. */
MP_API int mp_manager_connect(mp_manager_client **c, const char *address, const char *authkey);
/** Like mp_manager_connect with a key of keylen bytes, which may contain NUL bytes. */
MP_API int mp_manager_connect_bytes(mp_manager_client **c, const char *address, const void *authkey,
                                    size_t keylen);
/** Gets a proxy for the registered object `name` (as manager.get_task_queue()); its put
 * and get take values (mp_queue_put_value); mp_queue_put sends bytes, and mp_queue_get
 * gives a bytes item's content or another item's MessagePack encoding. MP_ENOENT: unknown. */
MP_API int mp_manager_queue(mp_manager_client *c, const char *name, mp_queue **q);
/** Asks the server to shut down (MP_EPERM unless it allows remote shutdown). */
MP_API int mp_manager_remote_shutdown(mp_manager_client *c);
/** Frees the client (queues made from it must be freed first). */
MP_API void mp_manager_disconnect(mp_manager_client *c);

#ifdef __cplusplus
}
#endif
#endif /* MULTIPROC_H */
