/* Which Linux-only facilities the POSIX backend may use. Portable POSIX code needs nothing
 * from here; code that uses a Linux-only call (pidfd, prctl, futex, memfd, /proc, build-id
 * notes, posix_spawn_file_actions_addclosefrom_np) sits behind `#if MP_LINUX` with a
 * portable fallback beside it. Configuring with -DMP_PORTABLE_POSIX=ON turns MP_LINUX off on
 * Linux too, so that a CI leg runs every fallback. */
#ifndef MP_POSIX_FEATURES_H
#define MP_POSIX_FEATURES_H

#if defined(__linux__) && !defined(MP_PORTABLE_POSIX)
#  define MP_LINUX 1
#else
#  define MP_LINUX 0
#endif

/* glibc 2.30 added pthread_mutex_clocklock / pthread_cond_clockwait with CLOCK_MONOTONIC. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
#  define MP_HAVE_CLOCKLOCK 1
#else
#  define MP_HAVE_CLOCKLOCK 0
#endif

#endif /* MP_POSIX_FEATURES_H */
