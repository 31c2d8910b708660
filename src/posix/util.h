/* Small helpers shared by the POSIX backend's child engine files (posix/util.c). */
#ifndef MP_POSIX_UTIL_H
#define MP_POSIX_UTIL_H

/* The MP_E* code for an errno from starting or opening something. */
int mp__errno_code(int e);

/* Starts a detached internal thread running fn(arg) with every signal blocked (signals are
 * for the application's threads). 0, or MP_EOS naming what. */
int mp__service_thread(void *(*fn)(void *), void *arg, const char *what);

#endif /* MP_POSIX_UTIL_H */
