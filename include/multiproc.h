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

#ifdef __cplusplus
}
#endif
#endif /* MULTIPROC_H */
