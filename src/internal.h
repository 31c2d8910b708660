/* Helpers shared by the core files. Not part of the public API. */
#ifndef MP_INTERNAL_H
#define MP_INTERNAL_H

#include "multiproc.h"

/* Sets the thread's error to "<what>: <OS error text> (OS error N)" from the last OS
 * error and returns MP_EOS. Used right after a failed OS call in a backend. */
int mp__os_error(const char *what);

/* Like mp__os_error for a known OS error number and a chosen MP_E* code. */
int mp__os_error_code(int code, long os_err, const char *what);

#endif /* MP_INTERNAL_H */
