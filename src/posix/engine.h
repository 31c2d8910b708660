/* What the POSIX child engine's two files share: posix/child.c (spawn, fork, wait, signal)
 * and posix/forkserver.c (the fork server and its clients). */
#ifndef MP_POSIX_ENGINE_H
#define MP_POSIX_ENGINE_H

#include <stddef.h>
#include <sys/types.h>

#include "../platform.h"

/* Where a spawned or served child finds its bootstrap handle (its stdio at 0..2 before it). */
enum { MP_BOOT_FD = 3 };

/* ---- child.c ------------------------------------------------------------------------------ */

/* In a new child: dies with parent (PR_SET_PDEATHSIG; portable builds: a thread that exits
 * when lifeline_fd, a read end of the parent's lifeline, reaches end of file) and exits at
 * once if parent is gone already. */
void mp__die_with_parent(pid_t parent, int lifeline_fd);

/* Portable builds: the read end of this process's lifeline, made on first use (a fork
 * child makes its own), or a negative MP_E* code. */
int mp__lifeline_read_end(void);

/* In a new child: closes the descriptors from low up (only the close-on-exec ones if
 * cloexec_only) but keep[0..nkeep) and a lifeline being watched. Safe after fork. */
void mp__close_from(int low, int cloexec_only, const mp_plat_handle *keep, size_t nkeep);

/* Waits up to timeout_ms (MP_FOREVER blocks) until fd is readable: 0, MP_ETIMEDOUT, MP_EOS. */
int mp__wait_readable(int fd, int timeout_ms);

/* Fills c for a started child pid. Its wait handle: served_fd if >= 0 (a fork server's child,
 * whose status the server reports there), else a pidfd or a watcher thread's pipe. 0, or an
 * MP_E* code (the child lives on: kill and reap it). */
int mp__track(mp_plat_child *c, pid_t pid, int flags, int served_fd);

/* ---- forkserver.c ------------------------------------------------------------------------- */

/* mp_plat_child.backend of a fork server's child (child.c has the others). */
enum { WAIT_SERVED = 2 };

/* In a fork server's child: the server, the direct parent that mp_plat_bootstrap_handle
 * accepts, the client staying the peer it checks; else 0. */
extern pid_t mp__served_by;

/* A served child's status handle is readable: 0 with *status (a waitpid status), or 1 if
 * the server went away before it reported one (its children die with it). */
int mp__served_status(int fd, int *status);

/* Asks the server to send sig (SIGTERM or SIGKILL) to its child: 0 (also when the server
 * has gone, and its children with it), or an errno. */
int mp__served_signal(int fd, int sig);

/* The server's decoder of a request header (bytes from another process; fuzzed): 0 if
 * buf[0..len) is one that announces nfds descriptors, else MP_EPROTO with the reason. */
int mp__forkserver_check_request(const void *buf, size_t len, size_t nfds);

#endif /* MP_POSIX_ENGINE_H */
