/* The fork server's life as its client sees it (forkserver.c), and what process.c does for
 * it. Not part of the public API. */
#ifndef MP_FORKSERVER_H
#define MP_FORKSERVER_H

#include "multiproc.h"
#include "platform.h"

/* Starts a child through this process's fork server, starting the server first if none
 * runs: spec as for mp_plat_forkserver_fork, c tracks the child. Errors: as
 * mp_plat_forkserver_fork, but a server that cannot start, went away or did not answer
 * within timeout_ms is MP_ECHILD (it is dropped: the next start starts a new one); *lost
 * says that it went away and no child of this request runs, so that asking again (with a
 * new bootstrap pair) is safe. */
int mp__forkserver_launch(mp_plat_child *c, const mp_plat_child_spec *spec, int timeout_ms,
                          int *lost);

/* Starts this process's fork server now if none runs (mp_init, when forkserver is chosen
 * there): 0, or MP_ECHILD if it cannot start (the next forkserver start tries again). */
int mp__forkserver_start(int timeout_ms);

/* After a forkserver start failed with rc (in the bootstrap, after the server forked the
 * child): if the server died meanwhile, the error says so as MP_ECHILD and the next start
 * starts a new one; otherwise rc as it is. */
int mp__forkserver_explain(int rc);

/* Stops this process's fork server if one runs (mp_shutdown, after the joins): what it still
 * runs dies with it unless detached. */
void mp__forkserver_stop(void);

/* process.c: spawns a fork server, this program bootstrapped like a spawned child, whose
 * target is preload (NULL: none), run once before it serves; *ctl receives the control
 * handle (the bootstrap connection's, kept), proc tracks the server. */
int mp__process_spawn_server(mp_preload_fn preload, int timeout_ms, mp_plat_child *proc,
                             mp_plat_handle *ctl);

#endif /* MP_FORKSERVER_H */
