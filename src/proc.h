/* What other core files need of a process object (process.c). Not part of the public API. */
#ifndef MP_PROC_H
#define MP_PROC_H

#include "multiproc.h"
#include "platform.h"

/* Implemented by process.c: a handle that becomes ready (POSIX: pollable, e.g. a pidfd;
 * Windows: the process HANDLE) when the process exits, owned by p and valid until
 * mp_process_free, also after join. MP_PLAT_INVALID if the process was never started
 * (mp_wait then fails with MP_ESTATE). */
mp_plat_handle mp__process_wait_handle(mp_process *p);

/* 0 if start method m exists here (MP_START_DEFAULT does), else MP_EINVAL (unknown, or fork
 * where there is none) or MP_ENOTSUP (forkserver where there is no fork), naming who. */
int mp__start_method_check(mp_start_method m, const char *who);

/* The spawn bootstrap's decoders, for the fuzz targets: the marker argument and the call
 * message (0 or MP_EPROTO with the reason). */
int mp__boot_parse_marker(const char *arg, int64_t *ppid, int64_t *handle, int *flags);
int mp__boot_check_call(const void *msg, size_t len);

#endif /* MP_PROC_H */
